#!/usr/bin/env python3
"""Phone control end to end (issue 15): a virtual branch (voiceedged + real kea-dhcp4 with our hook
+ voiceedge-phonesim over TCP, tests/e2e/branch.py) with three listed phones holding their
registrations.

- a reload that changes phone 1's display name sends a service-control NOTIFY (restart) to
  phone 1 only; phone 1 answers 200, fetches SEP<MAC>.cnf.xml again (seen in its timeline after
  the push) and registers anew; phones 2 and 3 get nothing.
- `voiceedgectl phone restart` and `phone reset` of phone 2: the answer names what was sent and
  the phone's 200; the reset phone goes through CDP, DHCP, files and REGISTER again.
- `voiceedgectl phone power-cycle` of phone 1: its PoE port (sim driver) goes off and on again.
- phone 3 runs with --ignore-notify (a hung phone): `phone restart` reports no answer after
  Timer F (32 s), in the command's answer, the timeline and the log.

Run as root: python3 tests/e2e/test_phonectl.py (VE_BUILD_DIR selects the build)."""
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from branch import Branch  # noqa: E402


class PhoneOutput:
    """The JSON lines of one simulator, read by a thread so the test can wait on them."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            self.q.put(obj)

    def wait_for(self, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                obj = self.q.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            self.lines.append(obj)
            if pred(obj):
                return obj.get("control", obj)
        return None

    def drain(self):
        while True:
            try:
                self.lines.append(self.q.get_nowait())
            except queue.Empty:
                return self.lines

    def mark(self):
        """From now on controls() lists only what comes after."""
        self.seen = len(self.drain())

    def controls(self):
        return [o["control"] for o in self.drain()[getattr(self, "seen", 0):] if "control" in o]


def control(action, done):
    """A phonesim control line: the NOTIFY answered (done False) or the action carried out."""
    def pred(o):
        c = o.get("control")
        return bool(c) and c.get("action") == action and (("registered" in c) == done)
    return pred


@unittest.skipUnless(os.geteuid() == 0, "needs root for network namespaces")
class PhoneControl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.branch = Branch(phones=3, tag=f"pc{os.getpid() % 1000}")
        cls.branch.__enter__()
        try:
            cls.branch.start_daemon()
            cls.phones = {}
            for i in (1, 2, 3):
                extra = ["--hold-s", "600"] + (["--ignore-notify"] if i == 3 else [])
                cls.phones[i] = PhoneOutput(cls.branch.start_phone(i, extra))
            for i, out in cls.phones.items():
                r = out.wait_for(lambda o: "steps" in o, 90)
                if not r or not r.get("registered"):
                    raise AssertionError(f"phone {i} did not register: {r}\n{cls.branch.tail_log()}")
        except BaseException:
            cls.branch.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        for out in getattr(cls, "phones", {}).values():
            if out.proc.poll() is None:
                out.proc.kill()
                out.proc.wait()
        cls.branch.__exit__(None, None, None)

    def ctl(self, *words, timeout=90):
        b = self.branch
        return subprocess.run([b.voiceedgectl, "--socket", b.socket] + list(words), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def setUp(self):
        for out in self.phones.values():
            out.mark()

    def history(self, i):
        return self.branch.ctl_json("show", "journey", self.branch.mac(i))["history"]

    def test_1_reload_reaches_the_changed_phone_only(self):
        with open(self.branch.site) as f:
            text = f.read()
        self.assertIn('display: "Desk 1"', text)
        with open(self.branch.site, "w") as f:
            f.write(text.replace('display: "Desk 1"', 'display: "Reception"'))
        r = self.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        answered = self.phones[1].wait_for(control("restart", False), 15)
        self.assertIsNotNone(answered, self.branch.tail_log())
        self.assertEqual(answered["answered"], 200)
        done = self.phones[1].wait_for(control("restart", True), 60)
        self.assertIsNotNone(done, self.branch.tail_log())
        self.assertTrue(done["registered"], done)
        self.assertEqual(done["config_file"], "SEP" + self.branch.mac(1).replace(":", "").upper() + ".cnf.xml")
        # The timeline: the push, its answer, then the re-fetch of the config file.
        hist = self.history(1)
        pushed = [e for e in hist if e["detail"].startswith("config pushed (restart) after reload over tcp")]
        answer = [e for e in hist if e["detail"] == "config push (restart) after reload: phone answered 200 OK"]
        self.assertTrue(pushed and answer, json.dumps(hist, indent=1))
        refetch = [e for e in hist if e["step"] == 7 and not e["history_only"] and
                   e["time_ms"] >= pushed[-1]["time_ms"] and ".cnf.xml" in e["detail"]]
        self.assertTrue(refetch, json.dumps(hist, indent=1))
        # The others got nothing: no NOTIFY reached them, nothing in their timeline.
        time.sleep(1)
        for i in (2, 3):
            self.assertEqual(self.phones[i].controls(), [])
            self.assertFalse([e for e in self.history(i) if "config push" in e["detail"]])

    def test_2_restart_and_reset_of_one_phone(self):
        r = self.ctl("--json", "phone", "restart", self.branch.mac(2))
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["answer"]["status"], 200, j)
        self.assertTrue(j["sent"]["destination"].startswith("tcp "), j)
        self.assertIn("action=restart", j["sent"]["body"])
        done = self.phones[2].wait_for(control("restart", True), 60)
        self.assertTrue(done and done["registered"], done)

        r = self.ctl("phone", "reset", self.branch.mac(2))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("action=reset", r.stdout)
        self.assertIn("phone answered 200 OK", r.stdout)
        done = self.phones[2].wait_for(control("reset", True), 90)
        self.assertTrue(done and done["registered"], done)
        # A reboot: the timeline shows a new DHCP exchange and a new REGISTER after the push. The
        # lease report travels from Kea on its own and may arrive just after the phone registered.
        deadline = time.monotonic() + 10
        while True:
            hist = self.history(2)
            pushed = [e for e in hist if e["detail"].startswith("config pushed (reset) by the administrator")]
            self.assertTrue(pushed, json.dumps(hist, indent=1))
            after = [e["step"] for e in hist if e["time_ms"] >= pushed[-1]["time_ms"] and not e["history_only"]]
            if all(step in after for step in (4, 7, 11)) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for step in (4, 7, 11):
            self.assertIn(step, after, json.dumps(hist, indent=1))
        self.assertEqual(self.phones[1].controls(), [])

    def test_3_power_cycle(self):
        port = f"{self.branch.tag}p1"
        r = self.ctl("--json", "phone", "power-cycle", self.branch.mac(1), "--seconds", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual(j["port"], port, j)
        hist = self.history(1)
        off = [e for e in hist if e["detail"] == f"power-cycle by the administrator: {port} off"]
        on = [e for e in hist if e["detail"] == f"power-cycled by the administrator: {port} on again after 2 s"]
        self.assertTrue(off and on, json.dumps(hist, indent=1))
        self.assertGreaterEqual(on[-1]["time_ms"] - off[-1]["time_ms"], 2000)
        # The PoE manager's own events: power off (reported as the port went off), then powered
        # again once the sim PSE detected and classified the phone.
        def manager_events():
            return [e for e in self.history(1) if e["step"] == 1 and not e["history_only"] and
                    e["time_ms"] >= off[-1]["time_ms"] - 1000]
        deadline = time.time() + 10
        while time.time() < deadline and not any(e["detail"].startswith("powered") for e in manager_events()):
            time.sleep(0.2)
        details = [e["detail"] for e in manager_events()]
        self.assertTrue(any(d.startswith("power off") for d in details), details)
        self.assertTrue(any(d.startswith("powered") for d in details), details)
        ports = {p["interface"]: p for p in self.branch.ctl_json("show", "power", "inline")["ports"]}
        self.assertFalse(ports[port]["admin_overridden"], ports[port])

    def test_4_a_hung_phone_is_reported(self):
        r = self.ctl("--json", "phone", "restart", self.branch.mac(3))
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertFalse(j["answer"]["answered"], j)
        self.assertRegex(j["result"], r"^no answer after 3[2-4] s \(0 retransmissions\)$")  # TCP: no retransmission
        got = self.phones[3].wait_for(control("restart", False), 5) or next(
            (c for c in self.phones[3].controls() if c.get("action") == "restart"), None)
        self.assertIsNotNone(got)
        self.assertIsNone(got.get("answered"), got)
        hist = self.history(3)
        self.assertTrue([e for e in hist if e["detail"].startswith(
            "config push (restart) by the administrator: no answer after")], json.dumps(hist, indent=1))
        with open(self.branch.log) as f:
            self.assertTrue(re.search(r"config push \(restart\) by the administrator: no answer after", f.read()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
