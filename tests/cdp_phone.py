#!/usr/bin/python3
"""A scapy-built Cisco phone for the cdp netns tests.

  cdp_phone.py --iface IF phone  [--mac MAC] [--request-id N]   one CDP frame as a 7970 sends it at
                                 boot: Device-ID SEP<MAC>, VoIP VLAN Query, Power Requested
  cdp_phone.py --iface IF flood  --count N --bad M               N valid frames from N different
                                 source MACs and M frames with a corrupted checksum
  cdp_phone.py --iface IF bye    [--mac MAC]                     the same phone with TTL 0

Runs inside the peer network namespace; sends only on --iface.
"""
import argparse
import struct
import sys

from scapy.all import Dot3, LLC, SNAP, sendp
from scapy.contrib.cdp import (CDPMsgCapabilities, CDPMsgDeviceID, CDPMsgGeneric, CDPMsgPlatform,
                               CDPMsgPortID, CDPMsgSoftwareVersion, CDPv2_HDR)

CDP_MULTICAST = "01:00:0c:cc:cc:cc"


def phone_frame(mac, request_id, ttl=180):
    sep = "SEP" + mac.replace(":", "").upper()
    tlvs = [
        CDPMsgDeviceID(val=sep.encode()),
        CDPMsgPortID(iface=b"Port 1"),
        CDPMsgCapabilities(cap=0x490),  # host, phone, two-port MAC relay
        CDPMsgSoftwareVersion(val=b"SIP70.8-5-3S"),
        CDPMsgPlatform(val=b"Cisco IP Phone 7970"),
        CDPMsgGeneric(type=0x0F, val=bytes.fromhex("20020001")),  # VoIP VLAN Query as a 7960 sends it
        # Power Requested: request id, management id, levels in mW (highest first)
        CDPMsgGeneric(type=0x19, val=struct.pack(">HHII", request_id, 0, 10250, 6300)),
    ]
    pdu = CDPv2_HDR(vers=2, ttl=ttl, msg=tlvs)
    return Dot3(dst=CDP_MULTICAST, src=mac) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0x0C, code=0x2000) / pdu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("mode", choices=["phone", "flood", "bye"])
    ap.add_argument("--mac", default="00:11:22:aa:bb:cc")
    ap.add_argument("--request-id", type=int, default=0x4242)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--bad", type=int, default=0)
    args = ap.parse_args()

    if args.mode == "phone":
        sendp(phone_frame(args.mac, args.request_id), iface=args.iface, verbose=False)
    elif args.mode == "bye":
        sendp(phone_frame(args.mac, args.request_id, ttl=0), iface=args.iface, verbose=False)
    else:
        frames = []
        for i in range(args.count):
            mac = "02:%02x:%02x:%02x:00:01" % ((i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
            frames.append(phone_frame(mac, i + 1))
        for i in range(args.bad):
            raw = bytearray(bytes(phone_frame("02:ee:00:00:%02x:%02x" % ((i >> 8) & 0xFF, i & 0xFF), 7)))
            raw[24] ^= 0x5A  # a checksum byte (14 Ethernet + 8 SNAP + 2)
            frames.append(raw)
        sendp(frames, iface=args.iface, verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
