#!/usr/bin/python3
"""A scapy-built Cisco phone asking for PoE over CDP, for tests/poe_cdp_netns_test.cpp.

  poe_cdp_phone.py --iface IF --mac MAC --request-id N --levels 12900[,6300...]

Sends one CDP frame (Device-ID SEP<MAC>, Platform, Power Requested 0x19 with the given levels in mW,
highest first) on --iface, which lives in the test's own network namespace.
"""
import argparse
import struct
import sys

from scapy.all import Dot3, LLC, SNAP, sendp
from scapy.contrib.cdp import CDPMsgDeviceID, CDPMsgGeneric, CDPMsgPlatform, CDPMsgPortID, CDPv2_HDR


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--mac", required=True)
    ap.add_argument("--request-id", type=int, required=True)
    ap.add_argument("--levels", required=True, help="comma-separated mW levels, highest first")
    args = ap.parse_args()

    levels = [int(x) for x in args.levels.split(",")]
    sep = "SEP" + args.mac.replace(":", "").upper()
    power_requested = struct.pack(">HH", args.request_id, 0) + b"".join(struct.pack(">I", mw) for mw in levels)
    pdu = CDPv2_HDR(vers=2, ttl=180, msg=[
        CDPMsgDeviceID(val=sep.encode()),
        CDPMsgPortID(iface=b"Port 1"),
        CDPMsgPlatform(val=b"Cisco IP Phone 8841"),
        CDPMsgGeneric(type=0x19, val=power_requested),
    ])
    frame = Dot3(dst="01:00:0c:cc:cc:cc", src=args.mac) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / \
        SNAP(OUI=0x0C, code=0x2000) / pdu
    sendp(frame, iface=args.iface, verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
