#!/usr/bin/env python3
"""Diagnostics end to end (issue 16): a virtual branch (voiceedged + real kea-dhcp4 with our hook +
voiceedge-phonesim, tests/e2e/branch.py) with two listed phones booting on the same port at the
same time and one unknown phone on another port.

- `voiceedgectl capture` of phone 1, stopped with Ctrl-C: tshark reads the pcapng and finds phone
  1's CDP, DHCP, config download and REGISTER, and no frame or packet of phone 2.
- the unknown phone's failed boot is in its report although no capture ran, and still is after a
  daemon restart (written to state_dir).
- no password of the site file anywhere in a report (archive stream and every member).
- /phone/<MAC>/boot.pcapng and /phone/<MAC>/report.tar.gz on the status page.

Run as root: python3 tests/e2e/test_diag.py (VE_BUILD_DIR selects the build)."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from branch import Branch, phone_results  # noqa: E402

TSHARK = shutil.which("tshark")
SHARED_MAC = "02:00:5e:d1:a9:01"


def tshark_count(path, display_filter):
    r = subprocess.run([TSHARK, "-r", path, "-d", "tcp.port==6970,http", "-Y", display_filter, "-T", "fields",
                        "-e", "frame.number"], text=True, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"tshark -r {path} -Y '{display_filter}': {r.stderr}")
    return len([line for line in r.stdout.splitlines() if line.strip()])


def untar(data):
    members = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        for m in t.getmembers():
            if m.isfile():
                members[m.name.split("/", 1)[1]] = t.extractfile(m).read()
    return members


@unittest.skipUnless(os.geteuid() == 0, "needs root for network namespaces")
@unittest.skipUnless(TSHARK, "tshark not installed (scripts/deps)")
class Diagnostics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.branch = Branch(phones=2, unknown=1, tag=f"dg{os.getpid() % 1000}")
        cls.branch.__enter__()
        try:
            # The simulator carries both phones' IP traffic with its interface's own MAC (what a
            # PC port behind a phone looks like): give that interface a third MAC, so that only
            # the phones' addresses tell their IP traffic apart.
            ns = cls.branch.phone_ns(1)
            for args in (["down"], ["address", SHARED_MAC], ["up"]):
                subprocess.run(["ip", "-n", ns, "link", "set", "eth0"] + args, check=True)
            # The unknown phone never registers (it is not listed, auto_register is off): its boot
            # has given up once boot_timeout_s has passed without registering (30 s, the least).
            with open(cls.branch.site, "a") as f:
                f.write("diagnostics: { boot_timeout_s: 30 }\n")
            cls.branch.start_daemon()
            cls.run_boots()
        except BaseException:
            cls.branch.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.branch.__exit__(None, None, None)

    @classmethod
    def run_boots(cls):
        b = cls.branch
        cls.capture_path = os.path.join(b.dir, "phone1.pcapng")
        cls.capture = subprocess.Popen(
            [b.voiceedgectl, "--socket", b.socket, "capture", b.mac(1), "--seconds", "240", "--write",
             cls.capture_path], stderr=subprocess.PIPE, text=True)
        # Phone 2: the first 5 packets, written to standard output (--write -, as into a pipe).
        cls.count_path = os.path.join(b.dir, "phone2-first5.pcapng")
        cls.count_capture = subprocess.Popen(
            [b.voiceedgectl, "--socket", b.socket, "capture", b.mac(2), "--count", "5", "--write", "-"],
            stdout=open(cls.count_path, "wb"), stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert cls.capture.poll() is None, cls.capture.stderr.read()
        # Phones 1 and 2 on port p1 (one simulator, two MACs), the unknown phone on p3.
        both = subprocess.Popen(
            ["ip", "netns", "exec", b.phone_ns(1), b.phonesim, "--interface", "eth0", "--phones", "2",
             "--first-mac", b.mac(1), "--json", "--expect-vlan", "100"],
            text=True, stdout=subprocess.PIPE, stderr=open(os.path.join(b.dir, "phonesim-12.log"), "a"))
        unknown = b.start_phone(3, ["--timeout-s", "40"])
        cls.sim_out = both.communicate(timeout=200)[0]
        cls.unknown_out = unknown.communicate(timeout=200)[0]
        # The daemon writes a failed boot to state_dir within 2 s of its end.
        failed_file = os.path.join(b.dir, "state", "boot-captures",
                                   "SEP" + b.mac(3).replace(":", "").upper() + ".json")
        deadline = time.time() + 90
        while not os.path.exists(failed_file) and time.time() < deadline:
            time.sleep(0.5)
        assert os.path.exists(failed_file), "the unknown phone's failed boot was not written:\n" + b.tail_log()
        cls.capture.send_signal(signal.SIGINT)  # Ctrl-C
        _, cls.capture_err = cls.capture.communicate(timeout=30)
        _, cls.count_err = cls.count_capture.communicate(timeout=30)  # it stopped by itself

    def phones_from(self, out):
        return {p["mac"].lower(): p for p in phone_results(out)}

    def ip_of(self, mac):
        for lease in self.branch.ctl_json("show", "dhcp", "leases")["leases"]:
            if lease["mac"].lower() == mac:
                return lease["ip"]
        return None

    def test_1_live_capture_has_phone1_and_nothing_of_phone2(self):
        b = self.branch
        self.assertEqual(self.capture.returncode, 0, self.capture_err)
        self.assertIn("stopped by the client", self.capture_err)
        self.assertRegex(self.capture_err, r"\d+ packets captured, 0 dropped")
        both = self.phones_from(self.sim_out)
        self.assertEqual(len(both), 2, self.sim_out)
        m1, m2 = b.mac(1), b.mac(2)
        ip1, ip2 = self.ip_of(m1), self.ip_of(m2)
        self.assertTrue(ip1 and ip2, (ip1, ip2))
        sep1 = "SEP" + m1.replace(":", "").upper()
        path = self.capture_path
        self.assertGreater(tshark_count(path, f"cdp && eth.src == {m1}"), 0, "phone 1's CDP")
        self.assertGreater(tshark_count(path, f"dhcp && dhcp.hw.mac_addr == {m1} && dhcp.option.dhcp == 1"), 0,
                           "phone 1's DHCPDISCOVER")
        self.assertGreater(tshark_count(path, f"dhcp && dhcp.hw.mac_addr == {m1} && dhcp.option.dhcp == 5"), 0,
                           "phone 1's DHCPACK")
        self.assertGreater(
            tshark_count(path, f'(http.request.uri contains "{sep1}.cnf.xml") || '
                               f'(tftp.source_file contains "{sep1}.cnf.xml")'), 0, "config download")
        self.assertGreater(tshark_count(path, f'sip.Method == "REGISTER" && ip.src == {ip1}'), 0, "REGISTER")
        nothing_of_2 = (f"eth.addr == {m2} || ip.addr == {ip2} || dhcp.hw.mac_addr == {m2} || "
                        f"arp.src.hw_mac == {m2} || arp.dst.proto_ipv4 == {ip2} || arp.src.proto_ipv4 == {ip2}")
        self.assertEqual(tshark_count(path, nothing_of_2), 0, "a frame or packet of phone 2")
        # Both phones did register meanwhile, on the same port.
        self.assertTrue(both[m1]["registered"], both[m1])
        self.assertTrue(both[m2]["registered"], both[m2])

    def test_2_count_limited_capture_to_stdout(self):
        b = self.branch
        self.assertEqual(self.count_capture.returncode, 0, self.count_err)
        self.assertIn("5 packets captured, 0 dropped (packet count reached)", self.count_err)
        self.assertEqual(tshark_count(self.count_path, "frame"), 5)
        m1, m2 = b.mac(1), b.mac(2)
        ip1 = self.ip_of(m1)
        listing = subprocess.run([TSHARK, "-r", self.count_path], capture_output=True, text=True).stdout
        # Phone 2's own frames, or the box's CDP/LLDP on the port it shares with phone 1.
        self.assertGreater(tshark_count(self.count_path, f"eth.src == {m2}"), 0, listing)
        self.assertEqual(tshark_count(self.count_path, f"eth.addr == {m2} || dhcp.hw.mac_addr == {m2} || "
                                                       f"((cdp || lldp) && !(eth.src == {m1}))"), 5, listing)
        self.assertEqual(tshark_count(self.count_path, f"eth.addr == {m1} || ip.addr == {ip1} || "
                                                       f"dhcp.hw.mac_addr == {m1} || arp.dst.proto_ipv4 == {ip1}"),
                         0, listing)

    # Last: it restarts the daemon, which empties the ring of recent log lines the other reports read
    # (outside systemd; under systemd they come from the journal).
    def test_9_unknown_phone_failed_boot_in_report_across_restart(self):
        b = self.branch
        mu = b.mac(3)
        out = os.path.join(b.dir, "unknown.tar.gz")
        b.ctl("report", mu, "--output", out)
        members = untar(open(out, "rb").read())
        self.assertIn("boot.pcapng", members)
        self.assertIn("failed", members["boot.json"].decode())
        pcap = os.path.join(b.dir, "unknown-boot.pcapng")
        open(pcap, "wb").write(members["boot.pcapng"])
        self.assertGreater(tshark_count(pcap, f"dhcp && dhcp.hw.mac_addr == {mu}"), 0)
        self.assertEqual(tshark_count(pcap, f"eth.addr == {b.mac(1)} || eth.addr == {b.mac(2)}"), 0)
        # Restart: the in-memory recorder is empty, the failed boot comes from state_dir.
        b.kill_daemon(signal.SIGTERM)
        b.start_daemon()
        b.ctl("report", mu, "--output", out)
        members = untar(open(out, "rb").read())
        self.assertIn("last-failed-boot.pcapng", members, sorted(members))
        open(pcap, "wb").write(members["last-failed-boot.pcapng"])
        self.assertGreater(tshark_count(pcap, f"dhcp && dhcp.hw.mac_addr == {mu}"), 0)
        self.assertIn("timeline.txt", members)

    def test_3_no_secret_in_any_report(self):
        b = self.branch
        passwords = re.findall(r'password: "([^"]+)"', open(b.site).read())
        self.assertEqual(len(passwords), 2)
        for i in (1, 2, 3):
            out = os.path.join(b.dir, f"r{i}.tar.gz")
            b.ctl("report", b.mac(i), "--output", out)
            raw = subprocess.run(["zcat", out], capture_output=True, check=True).stdout
            members = untar(open(out, "rb").read())
            for pw in passwords:
                self.assertNotIn(pw.encode(), raw, f"{pw} in report {i}")
                for name, content in members.items():
                    self.assertNotIn(pw.encode(), content, f"{pw} in {name} of report {i}")
        # Phone 1's report has its config (masked) and the download of it in the capture.
        members = untar(open(os.path.join(b.dir, "r1.tar.gz"), "rb").read())
        sep1 = "SEP" + b.mac(1).replace(":", "").upper()
        self.assertIn(f"{sep1}.cnf.xml", members)
        self.assertIn(b"********", members[f"{sep1}.cnf.xml"])
        for name in ("timeline.json", "device-status.json", "lease.json", "cdp-lldp-neighbor.json", "poe-port.json",
                     "sip-bindings.json", "log.txt", "README.txt"):
            self.assertIn(name, members)
        self.assertIn(b.mac(1).encode(), members["lease.json"].lower())
        self.assertNotIn(b.mac(2).encode(), members["lease.json"].lower())
        self.assertGreater(len(members["log.txt"]), 0)

    def test_4_status_page_downloads(self):
        b = self.branch
        mu = b.mac(3)
        r = subprocess.run(["ip", "netns", "exec", b.box, "curl", "-sf", "-o", os.path.join(b.dir, "http-boot.pcapng"),
                            f"http://127.0.0.1:8080/phone/{mu}/boot.pcapng"], timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertGreater(tshark_count(os.path.join(b.dir, "http-boot.pcapng"), f"eth.addr == {mu}"), 0)
        r = subprocess.run(["ip", "netns", "exec", b.box, "curl", "-sf", f"http://127.0.0.1:8080/phone/{mu}/report.tar.gz"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertIn("README.txt", untar(r.stdout))
        # The phone's page links both downloads.
        page = subprocess.run(["ip", "netns", "exec", b.box, "curl", "-sf", f"http://127.0.0.1:8080/phone/{mu}"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(page.returncode, 0)
        self.assertRegex(page.stdout, rf'href="/phone/{mu}/report.tar.gz"[^>]*>download report<')
        self.assertRegex(page.stdout, rf'href="/phone/{mu}/boot.pcapng"[^>]*>download last boot capture<')
        r = subprocess.run(["ip", "netns", "exec", b.box, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:8080/phone/00:00:00:00:00:99/boot.pcapng"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "404")


if __name__ == "__main__":
    unittest.main(verbosity=2)
