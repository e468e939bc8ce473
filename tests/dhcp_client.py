#!/usr/bin/python3
"""A raw DHCP client for the netns tests: DISCOVER -> OFFER -> REQUEST -> ACK on one interface.

Options are encoded by hand (not by scapy's option table) so a test can send exactly the bytes it
wants, malformed ones included. Prints one JSON object: {"offer": {...}|null, "ack": {...}|null},
each reply with "yiaddr" and "options" {code: hex}. Needs root (raw sockets).
"""
import argparse
import json
import random
import sys

from scapy.all import BOOTP, AsyncSniffer, Dot1Q, Ether, IP, UDP, Raw, conf, sendp, srp1  # noqa: E402

MAGIC = b"\x63\x82\x53\x63"


def tlv(code, payload):
    return bytes([code, len(payload)]) + payload


def build_options(msg_type, args, requested_ip=None, server_id=None):
    opts = tlv(53, bytes([msg_type]))
    if args.vendor_class is not None:
        opts += tlv(60, args.vendor_class.encode())
    if args.vendor_class_hex is not None:
        opts += tlv(60, bytes.fromhex(args.vendor_class_hex))
    if args.prl is not None:
        opts += tlv(55, bytes(int(c) for c in args.prl.split(",") if c))
    if args.hostname:
        opts += tlv(12, args.hostname.encode())
    if requested_ip:
        opts += tlv(50, bytes(int(p) for p in requested_ip.split(".")))
    if server_id:
        opts += tlv(54, server_id)
    if args.raw_options_hex:
        opts += bytes.fromhex(args.raw_options_hex)  # appended as-is, may be malformed on purpose
    return MAGIC + opts + b"\xff"


def parse_options(raw):
    """code -> hex payload of the first instance; stops at END or at a truncated TLV."""
    out = {}
    if raw[:4] != MAGIC:
        return out
    i = 4
    while i < len(raw):
        code = raw[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(raw) or i + 2 + raw[i + 1] > len(raw):
            break
        n = raw[i + 1]
        out.setdefault(str(code), raw[i + 2:i + 2 + n].hex())
        i += 2 + n
    return out


def as_reply(reply):
    b = bytes(reply[BOOTP])
    return {"yiaddr": reply[BOOTP].yiaddr, "options": parse_options(b[236:])}


def exchange_tagged(args, pkt, xid):
    """Sends `pkt` 802.1Q-tagged and takes any BOOTP reply with our xid, tagged or not (scapy's
    srp1 would not match an untagged answer to a tagged request, which is the answer to catch)."""
    sniffer = AsyncSniffer(iface=args.iface, store=True,
                           lfilter=lambda p: BOOTP in p and p[BOOTP].op == 2 and p[BOOTP].xid == xid)
    sniffer.start()
    try:
        for _ in range(args.tries):
            sendp(pkt, iface=args.iface, verbose=0)
            sniffer.join(timeout=args.timeout)
            if sniffer.results:
                break
    finally:
        if sniffer.running:
            sniffer.stop()
    replies = sniffer.results or []
    return as_reply(replies[0]) if replies else None


def exchange(args, xid, msg_type, requested_ip=None, server_id=None):
    mac = bytes.fromhex(args.mac.replace(":", ""))
    bootp = BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=0x8000, chaddr=mac + b"\x00" * 10)
    ip = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / bootp /
          Raw(build_options(msg_type, args, requested_ip, server_id)))
    ether = Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff")
    if args.vlan is not None:
        return exchange_tagged(args, ether / Dot1Q(vlan=args.vlan) / ip, xid)
    pkt = ether / ip
    for _ in range(args.tries):
        reply = srp1(pkt, iface=args.iface, timeout=args.timeout, verbose=0)
        if reply is not None and BOOTP in reply:
            return as_reply(reply)
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--vendor-class")
    p.add_argument("--vendor-class-hex")
    p.add_argument("--prl", help="comma separated option codes")
    p.add_argument("--hostname")
    p.add_argument("--raw-options-hex", help="extra option bytes appended verbatim")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--tries", type=int, default=2)
    p.add_argument("--discover-only", action="store_true")
    p.add_argument("--vlan", type=int, help="send 802.1Q-tagged with this VLAN ID (0: priority tag)")
    args = p.parse_args()
    conf.checkIPaddr = False  # replies come from the server's address, not the broadcast we sent to
    xid = random.randint(1, 0xFFFFFFFF)
    result = {"offer": exchange(args, xid, 1), "ack": None}
    if result["offer"] and not args.discover_only:
        server_id = bytes.fromhex(result["offer"]["options"].get("54", ""))
        result["ack"] = exchange(args, xid, 3, result["offer"]["yiaddr"], server_id or None)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
