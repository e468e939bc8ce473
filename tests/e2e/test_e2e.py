#!/usr/bin/env python3
"""End-to-end: a virtual branch (voiceedged + real kea-dhcp4 with our hook) and 22 simulated
phones, each on its own port in its own namespace. 20 are listed in the site file and must reach
Registered through every step of the note; 2 are unknown and must stop at step 11 with the
reason named. Then faults: kill -9 of voiceedged (no power-cycle, registrations survive, Kea keeps
serving and is adopted, phones booting afterwards complete) and kill -9 of kea-dhcp4 (restarted).
Last, two listed phones call each other through the box's proxy (407, 180, 200, ACK, BYE).

Run as root: python3 tests/e2e/test_e2e.py  (VE_BUILD_DIR selects the build; VE_KEEP_E2E=1 keeps
the branch directory for inspection)."""
import datetime
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from branch import Branch, LOAD, phone_results  # noqa: E402


def stamp_ms(iso):
    """Milliseconds since the epoch of the journey's "2026-12-03T07:44:33.792Z" stamps."""
    return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000

LISTED = 20
UNKNOWN = 2
# The steps a registered phone must show, in the order of the note (8, 9 and 12-14 depend on
# what its config names; they are checked where they apply).
REQUIRED_IN_ORDER = [1, 3, 4, 5, 6, 7, 10, 11]


def run_phones(branch, indices, extra=()):
    procs = {i: branch.start_phone(i, extra) for i in indices}
    results = {}
    for i, p in procs.items():
        out, _ = p.communicate(timeout=300)
        results[i] = {"exit": p.returncode, "phones": phone_results(out), "raw": out}
    return results


def json_lines(text):
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def calls_of(text):
    """The {"calls": {"mac", "calls": [...]}} lines of a simulator's JSON output, by MAC."""
    return {o["calls"]["mac"]: o["calls"]["calls"] for o in json_lines(text) if "calls" in o and "mac" in o["calls"]}


def strings_in(obj):
    """Every string in a JSON tree (to check that a table lists a phone, whatever its shape)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


def registrations(branch):
    data = branch.ctl_json("show", "sip", "registrations")
    return data["registrations"] if isinstance(data, dict) else data


def kea_pid(branch):
    out = os.popen(f"ip netns pids {branch.box}").read().split()
    for pid in out:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "kea-dhcp4":
                    return int(pid)
        except OSError:
            pass
    return None


@unittest.skipUnless(os.geteuid() == 0, "needs root for network namespaces")
class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.branch = Branch(phones=LISTED, unknown=UNKNOWN)
        cls.branch.__enter__()
        try:
            cls.branch.start_daemon()
            cls.results = run_phones(cls.branch, range(1, LISTED + UNKNOWN + 1), ["--timeout-s", "120"])
            # Lease reports are fire-and-forget datagrams; in a burst some are lost and the daemon
            # takes those bindings from Kea's lease file within 2 s. Wait for it to converge (at
            # most 15 s) before comparing views.
            want = {cls.branch.mac(i) for i in range(1, LISTED + UNKNOWN + 1)}
            deadline = time.time() + 15
            while time.time() < deadline:
                leases = cls.branch.ctl_json("show", "dhcp", "leases")["leases"]
                if want <= {l["mac"] for l in leases if l["state"] == "bound"}:
                    break
                time.sleep(0.25)
        except BaseException:
            print(cls.branch.tail_log(120), file=sys.stderr)
            cls.branch.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("VE_KEEP_E2E"):
            print("branch kept in", cls.branch.dir, file=sys.stderr)
        cls.branch.__exit__(None, None, None)

    def sim(self, i):
        r = self.results[i]
        self.assertEqual(len(r["phones"]), 1, f"phone {i}: simulator printed no result:\n{r['raw']}")
        return r["phones"][0]

    def explain(self, i):
        return f"\nsimulator: {json.dumps(self.results[i]['phones'], indent=1)[:3000]}\ndaemon log:\n" + \
            self.branch.tail_log(40)

    # -- the 20 listed phones ---------------------------------------------------------------------
    def test_01_listed_phones_register_through_every_step_in_order(self):
        for i in range(1, LISTED + 1):
            with self.subTest(phone=i):
                s = self.sim(i)
                self.assertTrue(s["registered"], self.explain(i))
                self.assertEqual(self.results[i]["exit"], 0)
                self.assertEqual(s["config_file"], f"SEP{self.branch.mac(i).replace(':', '').upper()}.cnf.xml")
                self.assertEqual(s["voice_vlan"], 100)
                steps = [st["step"] for st in s["steps"]]
                self.assertEqual(steps, sorted(steps), "steps out of the note's order")
                outcome = {st["step"]: st["outcome"] for st in s["steps"]}
                self.assertEqual(outcome.get(5), "expected", "CTL must be not-found on a non-secure site")
                self.assertEqual(outcome.get(6), "expected", "ITL must be not-found on a non-secure site")
                for n in (4, 7, 9, 10, 11, 12, 13, 14):
                    self.assertEqual(outcome.get(n), "ok", f"step {n}: {s['steps']}")

    def test_02_daemon_timeline_agrees_with_the_simulator(self):
        phones = {p["mac"]: p for p in self.branch.ctl_json("show", "phones")}
        for i in range(1, LISTED + 1):
            with self.subTest(phone=i):
                mac = self.branch.mac(i)
                s = self.sim(i)
                self.assertIn(mac, phones)
                p = phones[mac]
                self.assertTrue(p["registered"], p)
                self.assertEqual(p["ipv4_address"], s["ip"])
                self.assertEqual(p["port"], f"{self.branch.tag}p{i}")
                self.assertIn("Registered with 10.10.100.1", p["registration"])
                self.assertEqual(p["active_load_id"], s["active_load"] or p["active_load_id"])
                j = self.branch.ctl_json("show", "journey", mac)
                steps = {st["step"]: st for st in j["steps"]}
                for n in REQUIRED_IN_ORDER:
                    self.assertTrue(steps[n]["seen"], f"step {n} missing in the daemon's journey: {j['steps']}")
                    want = "expected" if n in (5, 6) else "ok"
                    self.assertEqual(steps[n]["outcome"], want, f"step {n}: {steps[n]}")
                # The box stamps each step when it handles it. CDP (3) and DHCP (4) travel different
                # paths (pcap vs Kea's hook report), so only their position before the downloads is
                # checked; from DHCP on, every step waits for the previous answer.
                sequential = [steps[n]["first"] for n in (4, 5, 6, 7, 10, 11)]
                self.assertEqual(sequential, sorted(sequential), f"first times out of order: {sequential}")
                # Power (1) is learned by reading the PSE on the PoE worker, one round for all
                # ports, so under load its stamp can trail the phone's first download by that
                # round (seen in CI: 43-56 ms, two phones stamped together); a second is the bound.
                self.assertLessEqual(stamp_ms(steps[1]["first"]), stamp_ms(steps[5]["first"]) + 1000,
                                     f"power stamped long after the CTL request: {steps[1]} {steps[5]}")
                self.assertLessEqual(steps[3]["first"], steps[5]["first"])
                self.assertIsNone(j["failed_step"])
                # The human view says the same.
                text = self.branch.ctl("show", "journey", "SEP" + mac.replace(":", "").upper()).stdout
                self.assertIn("Registration:", text)
                self.assertIn("Registered with", text)

    def test_03_every_table_lists_the_phones(self):
        power = list(strings_in(self.branch.ctl_json("show", "power", "inline")))
        cdp = list(strings_in(self.branch.ctl_json("show", "cdp", "neighbors")))
        leases = list(strings_in(self.branch.ctl_json("show", "dhcp", "leases")["leases"]))
        regs = list(strings_in(self.branch.ctl_json("show", "sip", "registrations")))
        for i in range(1, LISTED + 1):
            mac = self.branch.mac(i)
            sep = "SEP" + mac.replace(":", "").upper()
            with self.subTest(phone=i):
                self.assertIn(sep, power, "show power inline")
                self.assertIn(sep, cdp, "show cdp neighbors")
                self.assertIn(mac, leases, "show dhcp leases")
                self.assertIn(sep, regs, "show sip registrations")
                self.assertIn(self.sim(i)["ip"], leases)

    def test_03b_provisioning_table_knows_the_phones(self):
        prov = self.branch.ctl_json("show", "provision")
        for i in range(1, LISTED + 1):
            sep = "SEP" + self.branch.mac(i).replace(":", "").upper()
            # The tree keys generated names case-insensitively (upper case).
            self.assertIn((sep + ".cnf.xml").upper(), [g.upper() for g in prov["generated"]])
        self.assertTrue(prov["recent"], prov)
        for r in prov["recent"]:
            self.assertTrue(r["phone"].startswith("SEP"), f"transfer not tied to a phone: {r}")
        # CTL + 2 ITL not found per phone; config, dial rules, 2 locale files, softkeys, 2 ring lists ok.
        http = prov["counters"]["http"]
        self.assertGreaterEqual(http["not_found"], 3 * (LISTED + UNKNOWN))
        self.assertGreaterEqual(http["ok"], 7 * LISTED)

    # -- the 2 unknown phones ------------------------------------------------------------------------
    def test_04_unknown_phones_get_xmldefault_and_stop_at_step_11_with_the_reason(self):
        for k in range(1, UNKNOWN + 1):
            i = LISTED + k
            with self.subTest(phone=i):
                s = self.sim(i)
                self.assertFalse(s["registered"])
                self.assertNotEqual(self.results[i]["exit"], 0)
                self.assertEqual(s["config_file"], "XMLDefault.cnf.xml", self.explain(i))
                self.assertEqual(s["failed_step"], 11, self.explain(i))
                j = self.branch.ctl_json("show", "journey", self.branch.mac(i))
                self.assertEqual(j["failed_step"], 11, j)
                self.assertIn("not in the site file", j["reason"])
                self.assertEqual({st["step"]: st["outcome"] for st in j["steps"] if st["seen"]}.get(5), "expected")

    # -- faults -------------------------------------------------------------------------------
    def test_05_kill9_of_the_daemon_keeps_power_registrations_and_dhcp(self):
        b = self.branch
        before_power = {p["interface"]: p for p in b.ctl_json("show", "power", "inline")["ports"]}
        before_regs = {r["device_name"] for r in registrations(b) if r.get("device_name")}
        self.assertGreaterEqual(len(before_regs), LISTED)
        kea_before = kea_pid(b)
        self.assertIsNotNone(kea_before, "kea-dhcp4 is not running")

        b.kill_daemon(signal.SIGKILL)
        time.sleep(1)
        self.assertEqual(kea_pid(b), kea_before, "kea-dhcp4 must keep serving while voiceedged is down")
        b.start_daemon()

        hw = json.load(open(os.path.join(b.dir, "state", "poe-sim-hardware.json")))
        for name, port in hw["ports"].items():
            self.assertEqual(port["power_cycles"], 0, f"{name} was power-cycled: {port}")
            self.assertEqual(port["power_ons"], 1, f"{name}: {port}")
        after_power = {p["interface"]: p for p in b.ctl_json("show", "power", "inline")["ports"]}
        for name, p in before_power.items():
            self.assertEqual(after_power[name]["oper"], p["oper"], name)
        after_regs = {r["device_name"] for r in registrations(b) if r.get("device_name")}
        self.assertEqual(after_regs, before_regs, "registrations lost by the restart")
        self.assertEqual(kea_pid(b), kea_before, "the restarted daemon must adopt Kea, not start another")
        self.assertTrue(b.ctl_json("show", "dhcp", "leases")["status"]["kea"].get("adopted"))
        # Timelines survived too.
        phones = b.ctl_json("show", "phones")
        registered = [p for p in phones if p["registered"]]
        self.assertGreaterEqual(len(registered), LISTED, json.dumps(
            [(p["name"], p["reason"]) for p in phones if not p["registered"]], indent=1))
        # Phones that boot now complete against the restarted daemon.
        again = run_phones(b, [1, 2, 3], ["--timeout-s", "120"])
        for i, r in again.items():
            self.assertEqual(r["exit"], 0, r["raw"][-2000:])

    def test_06_kea_killed_is_restarted_and_dhcp_resumes(self):
        b = self.branch
        pid = kea_pid(b)
        self.assertIsNotNone(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline and (kea_pid(b) in (None, pid)):
            time.sleep(0.2)
        new = kea_pid(b)
        self.assertIsNotNone(new, "voiceedged did not restart kea-dhcp4:\n" + b.tail_log(30))
        self.assertNotEqual(new, pid)
        again = run_phones(b, [4], ["--timeout-s", "120"])
        self.assertEqual(again[4]["exit"], 0, again[4]["raw"][-2000:])
        self.assertEqual(again[4]["phones"][0]["steps"][0]["step"] <= 4, True)

    # -- a call between two simulated phones ---------------------------------------------------------
    def test_07_two_listed_phones_call_each_other_through_the_box(self):
        b = self.branch
        caller_i, callee_i = 1, 2
        caller_ext, callee_ext = str(1000 + caller_i), str(1000 + callee_i)
        # The callee boots and holds its registration (answering); the caller starts once the
        # callee is registered, so the box has a binding to forward the INVITE to.
        callee = b.start_phone(callee_i, ["--timeout-s", "60", "--hold-s", "60", "--answer-after-ms", "200"])
        try:
            boot = None
            for line in callee.stdout:
                obj = next(json_lines(line), None)
                if obj and "mac" in obj and "steps" in obj:
                    boot = obj
                    break
            self.assertIsNotNone(boot, "the callee printed no boot result")
            self.assertTrue(boot["registered"], json.dumps(boot, indent=1)[:3000])
            caller = b.start_phone(caller_i, ["--timeout-s", "60", "--call", callee_ext, "--call-after-s", "0",
                                              "--call-seconds", "1"])
            caller_out, _ = caller.communicate(timeout=120)
        finally:
            # The callee holds for 60 s; SIGINT ends the hold and makes it print what it has.
            if callee.poll() is None:
                callee.send_signal(signal.SIGINT)
            callee_out, _ = callee.communicate(timeout=30)
        explain = f"\ncaller:\n{caller_out[-3000:]}\ncallee:\n{callee_out[-3000:]}\ndaemon:\n{b.tail_log(40)}"
        self.assertEqual(caller.returncode, 0, explain)  # with --call: 0 only after 200 and BYE 200

        placed = calls_of(caller_out).get(b.mac(caller_i), [])
        self.assertEqual(len(placed), 1, explain)
        call = placed[0]
        self.assertEqual(call["direction"], "placed")
        self.assertEqual(call["peer"], callee_ext)
        self.assertEqual(call["final_code"], 200, explain)
        self.assertTrue(call["answered"], explain)
        self.assertTrue(call["ringing"], explain)
        self.assertEqual(call["ended_by"], "caller")
        self.assertEqual(call["bye_code"], 200, explain)
        self.assertGreaterEqual(call["setup_ms"], 200)  # the callee rang 200 ms before answering

        received = calls_of(callee_out).get(b.mac(callee_i), [])
        self.assertEqual(len(received), 1, explain)
        self.assertEqual(received[0]["direction"], "received")
        self.assertEqual(received[0]["peer"], caller_ext)
        self.assertEqual(received[0]["call_id"], call["call_id"])
        self.assertEqual(received[0]["final_code"], 200)
        self.assertTrue(received[0]["answered"], explain)  # the ACK came through the box
        self.assertEqual(received[0]["ended_by"], "caller", explain)  # and so did the BYE

        # The box saw the same call end to end.
        calls = b.ctl_json("show", "calls")
        mine = [c for c in calls["calls"] if c.get("call_id") == call["call_id"]]
        self.assertEqual(len(mine), 1, json.dumps(calls, indent=1)[:3000])
        c = mine[0]
        self.assertEqual(c["state"], "ended", c)
        self.assertEqual(c["from"], caller_ext)
        self.assertEqual(c["to"], callee_ext)
        self.assertEqual(c["answered_by"], callee_ext)
        self.assertEqual(c["final_code"], 200)
        self.assertEqual(c["ended_by"], "caller")
        self.assertEqual(c["caller_transport"], "tcp")
        self.assertEqual(c["callee_transport"], "tcp")
        caller_journey = json.dumps(b.ctl_json("show", "journey", b.mac(caller_i)))
        self.assertIn(f"call placed to {callee_ext} answered", caller_journey)
        callee_journey = json.dumps(b.ctl_json("show", "journey", b.mac(callee_i)))
        self.assertIn(f"call received from {caller_ext}", callee_journey)


if __name__ == "__main__":
    unittest.main(verbosity=2)
