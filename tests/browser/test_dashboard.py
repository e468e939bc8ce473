#!/usr/bin/env python3
"""The status page in a real browser: Debian's headless Chromium, driven over the DevTools
protocol, against a real voiceedged (with kea-dhcp4 and our hook) and voiceedge-phonesim phones in
network namespaces (the e2e branch of tests/e2e/branch.py).

Checks: the dashboard lists every phone of a simulated boot with the step cells the daemon's own
timeline has; a phone booting while the page is open appears without a reload (over the event
stream, and again with the stream cut, by the periodic refresh); the ports view shows the sim
PoE driver's watts; the phone page has Device Status, the time chart, the cells, no dead link;
screenshots of each page (1280x900 and phone-sized) are saved under <build>/artifacts/browser and
checked to be non-blank.

Run as root: python3 tests/browser/test_dashboard.py (VE_BUILD_DIR selects the build)."""
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import cdp  # noqa: E402
from branch import Branch  # noqa: E402
from test_e2e import run_phones  # noqa: E402

LISTED = 6      # 1-3 boot first, 4 while the page is open, 5 with the stream cut, 6 never
UNKNOWN = 1     # boots first; not in the site file
URL = "http://127.0.0.1:8080"
# Outcome words of the daemon's timeline -> data-outcome of a step cell.
CELL = {"ok": "ok", "expected": "expected", "failed": "failed", "info": "in-progress"}

ROWS_JS = """Array.from(document.querySelectorAll('#rows tr')).map(tr => ({
  mac: tr.dataset.mac, state: tr.dataset.state, listed: tr.dataset.listed,
  cells: Array.from(tr.querySelectorAll('[data-step]')).map(c => [Number(c.dataset.step), c.dataset.outcome])}))"""


def skip_reason():
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if not cdp.find_chromium():
        return "chromium not installed (scripts/deps installs it)"
    return None


@unittest.skipIf(skip_reason(), skip_reason() or "")
class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.branch = Branch(phones=LISTED, unknown=UNKNOWN, tag=f"vb{os.getpid() % 10000}")
        cls.browser = None
        cls.artifacts = os.path.join(cls.branch.build, "artifacts", "browser")
        os.makedirs(cls.artifacts, exist_ok=True)
        cls.branch.__enter__()
        try:
            cls.branch.start_daemon()
            first = [1, 2, 3, LISTED + 1]
            cls.results = run_phones(cls.branch, first, ["--timeout-s", "60"])
            cls.browser = cdp.Browser(prefix=["ip", "netns", "exec", cls.branch.box],
                                      log_path=os.path.join(cls.artifacts, "chromium.log"))
            cls.page = cls.browser.new_page(1280, 900)
            cls.page.goto(URL + "/")
            cls.page.wait_for("document.getElementById('live').dataset.state === 'live'")
            cls.page.eval("window.__ve_marker = 'no reload'")
        except BaseException:
            print(cls.branch.tail_log(80), file=sys.stderr)
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.close()
        cls.branch.__exit__(None, None, None)

    # -- helpers ------------------------------------------------------------------------------
    def journey_cells(self, mac):
        """The cells the daemon's own timeline implies: a step it saw has that outcome; one it did
        not see is "none" on a registered phone, else none, missing or in-progress."""
        j = self.branch.ctl_json("show", "journey", mac)
        return [[s["step"], CELL.get(s["outcome"], "none") if s["seen"] else None] for s in j["steps"]]

    def assertCells(self, cells, mac, registered=True):
        want = self.journey_cells(mac)
        self.assertEqual([c[0] for c in cells], list(range(1, 15)), "14 cells, steps 1..14")
        for (n, got), (_, expected) in zip(cells, want):
            if expected is not None:
                self.assertEqual(got, expected, f"step {n}")
            elif registered:
                self.assertEqual(got, "none", f"step {n}")
            else:
                self.assertIn(got, ("none", "missing", "in-progress"), f"step {n}")

    def rows(self, page=None):
        return {r["mac"]: r for r in (page or self.page).eval(ROWS_JS)}

    def wait_registered_row(self, page, mac, timeout):
        page.wait_for(f"(() => {{ const tr = document.querySelector('#rows tr[data-mac=\"{mac}\"]');"
                      f" return tr && tr.dataset.state === 'registered'; }})()", timeout=timeout)

    def boot(self, i):
        r = run_phones(self.branch, [i], ["--timeout-s", "60"])[i]
        self.assertEqual(r["exit"], 0, r["raw"][-2000:])
        return r

    def shoot(self, page, name):
        png = page.screenshot(os.path.join(self.artifacts, name))
        w, h, colours, busy = cdp.image_stats(self.browser, png)
        self.assertGreater(w * h, 0)
        self.assertGreater(colours, 40, f"{name}: {colours} colours: blank?")
        self.assertGreater(busy, 0.03, f"{name}: {busy:.3f} of the pixels differ from the background: blank?")
        return w, h

    # -- tests (in order: later ones boot more phones) ----------------------------------------
    def test_1_dashboard_shows_every_phone_with_the_timeline_cells(self):
        rows = self.rows()
        for i in (1, 2, 3, LISTED + 1):
            mac = self.branch.mac(i)
            with self.subTest(phone=i):
                self.assertIn(mac, rows)
                self.assertCells(rows[mac]["cells"], mac, registered=i <= LISTED)
        for i in (1, 2, 3):
            r = rows[self.branch.mac(i)]
            self.assertEqual(r["state"], "registered")
            self.assertEqual(r["listed"], "yes")
            cells = dict(r["cells"])
            for n in (1, 3, 4, 7, 10, 11):
                self.assertEqual(cells[n], "ok", f"step {n}")
            self.assertEqual(cells[5], "expected")  # CTL not found: normal on a non-secure site
        unknown = rows[self.branch.mac(LISTED + 1)]
        self.assertEqual(unknown["listed"], "no")
        self.assertNotEqual(unknown["state"], "registered")
        # Listed phones not booted yet are there too: the sim PoE driver powered their ports
        # (step 1 ok), nothing else happened.
        for i in (4, 5, 6):
            r = rows[self.branch.mac(i)]
            self.assertIn(r["state"], ("booting", "stuck"))
            self.assertEqual(dict(r["cells"])[1], "ok")
            self.assertEqual(dict(r["cells"])[11], "none")
        counters = self.page.eval("Object.fromEntries(Array.from(document.querySelectorAll('[data-counter]'))"
                                  ".map(c => [c.dataset.counter, Number(c.querySelector('b').textContent)]))")
        self.assertEqual(counters["registered"], 3)
        self.assertEqual(counters["unknown"], 1)
        self.assertEqual(counters["never-seen"], 0)
        self.assertEqual(counters["booting"] + counters["stuck"], 4)
        # Filter and sort work on what is shown.
        self.page.eval("document.getElementById('filter').value = '1e7aff'; "
                       "document.getElementById('filter').dispatchEvent(new Event('input'))")
        visible = self.page.eval("Array.from(document.querySelectorAll('#rows tr')).filter(t => !t.hidden)"
                                 ".map(t => t.dataset.mac)")
        self.assertEqual(visible, [self.branch.mac(LISTED + 1)])
        self.page.eval("document.getElementById('filter').value = ''; "
                       "document.getElementById('filter').dispatchEvent(new Event('input'))")

    def test_2_ports_view_shows_the_simulated_watts(self):
        power = self.branch.ctl_json("show", "power", "inline")
        self.page.wait_for("document.querySelector('[data-port]') !== null")
        tiles = {t["port"]: t for t in self.page.eval(
            "Array.from(document.querySelectorAll('[data-port]')).map(t => ({port: t.dataset.port, "
            "watts: Number(t.dataset.watts), poe: t.dataset.poe, link: t.dataset.link, text: t.textContent}))")}
        ports = {p["interface"]: p for p in power["ports"]}
        for i in (1, 2, 3):
            port = f"{self.branch.tag}p{i}"
            with self.subTest(port=port):
                self.assertEqual(ports[port]["oper"], "on")
                self.assertAlmostEqual(tiles[port]["watts"], 6.3, places=1)  # site file: draw_watts 6.3
                self.assertAlmostEqual(tiles[port]["watts"], ports[port]["power_w"], places=1)
                self.assertEqual(tiles[port]["poe"], "on")
                self.assertIn("V100", tiles[port]["text"])
                self.assertIn("D10", tiles[port]["text"])
        remaining = self.page.eval("Number(document.querySelector('[data-remaining-w]').dataset.remainingW)")
        self.assertAlmostEqual(remaining, power["remaining_w"], places=1)

    def test_3_phone_booting_while_the_page_is_open_appears_without_reload(self):
        mac = self.branch.mac(4)
        self.boot(4)
        self.wait_registered_row(self.page, mac, timeout=15)
        self.assertEqual(self.page.eval("window.__ve_marker"), "no reload")
        self.assertCells(self.rows()[mac]["cells"], mac)
        self.page.wait_for("Number(document.querySelector('[data-counter=registered] b').textContent) === 4")

    def test_4_phone_page(self):
        mac = self.branch.mac(1)
        page = self.browser.new_page(1280, 900)
        page.goto(URL + "/phone/" + mac.replace(":", "-"))  # another accepted spelling
        page.wait_for("document.getElementById('live').dataset.state === 'live'")
        cells = page.eval("Array.from(document.querySelectorAll('.strip.big [data-step]'))"
                          ".map(c => [Number(c.dataset.step), c.dataset.outcome])")
        self.assertCells(cells, mac)
        text = page.eval("document.querySelector('section.ds').textContent")
        for label in ("Registration", "Registered with 10.10.100.1", "IPv4 Address", "Active Load ID",
                      "Inactive Load ID", "Download Status"):
            self.assertIn(label, text)
        journey = self.branch.ctl_json("show", "journey", mac)
        dots = page.eval("document.querySelectorAll('#timeline circle').length")
        self.assertGreaterEqual(dots, 8)
        self.assertLessEqual(dots, len(journey["history"]))
        rows = page.eval("document.querySelectorAll('#events tr').length")
        self.assertEqual(rows, len(journey["history"]))
        # Above the fold at 1280x900: Device Status and the whole chart.
        bottom = page.eval("Math.max(document.querySelector('section.ds dl').getBoundingClientRect().bottom, "
                           "document.getElementById('timeline').getBoundingClientRect().bottom)")
        self.assertLessEqual(bottom, 900)
        # No timestamp wraps mid-date.
        wrapped = page.eval("Array.from(document.querySelectorAll('.nw')).filter(e => e.getClientRects().length > 1 "
                            "|| e.scrollWidth > e.clientWidth + 1 && e.tagName !== 'TD').length")
        self.assertEqual(wrapped, 0)
        # Every link on the page leads somewhere (download links appear only when their route exists).
        dead = page.eval("""(async () => {
            const bad = [];
            for (const a of document.querySelectorAll('a[href]')) {
              const r = await fetch(a.href, {method: 'HEAD'});
              if (!r.ok) bad.push(a.getAttribute('href') + ' ' + r.status);
            }
            return bad; })()""")
        self.assertEqual(dead, [])
        self.shoot(page, "phone-1280x900.png")
        page.resize(390, 844, mobile=True)
        page.goto(URL + "/phone/" + mac)
        self.shoot(page, "phone-390x844.png")
        self.browser.send("Target.closeTarget", {"targetId": page.target})

    def test_5_stream_cut_falls_back_to_periodic_refresh(self):
        page = self.browser.new_page(1280, 900)
        session = page.session

        def cut_stream(m):
            if m.get("method") == "Fetch.requestPaused" and m.get("sessionId") == session:
                self.browser.send("Fetch.failRequest", {"requestId": m["params"]["requestId"],
                                                        "errorReason": "ConnectionClosed"}, session)
                return True
            return False

        self.browser.handlers.append(cut_stream)
        try:
            page.send("Fetch.enable", {"patterns": [{"urlPattern": "*/events*"}]})
            page.goto(URL + "/")
            page.wait_for("document.getElementById('live').dataset.state === 'polling'")
            page.eval("window.__ve_marker = 'no reload'")
            mac = self.branch.mac(5)
            self.boot(5)
            self.wait_registered_row(page, mac, timeout=15)  # the refresh runs every 5 s
            self.assertEqual(page.eval("window.__ve_marker"), "no reload")
            self.assertEqual(page.eval("document.getElementById('live').dataset.state"), "polling")
        finally:
            self.browser.handlers.remove(cut_stream)
            self.browser.send("Target.closeTarget", {"targetId": page.target})

    def test_6_screenshots_of_the_dashboard(self):
        self.page.goto(URL + "/")
        self.page.wait_for("document.getElementById('live').dataset.state === 'live'")
        self.shoot(self.page, "dashboard-1280x900.png")
        # Readable without sideways scrolling on a phone-sized screen.
        self.page.resize(390, 844, mobile=True)
        self.page.goto(URL + "/")
        overflow = self.page.eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        self.assertLessEqual(overflow, 0)
        self.shoot(self.page, "dashboard-390x844.png")
        self.page.resize(1280, 900)


if __name__ == "__main__":
    unittest.main(verbosity=2)
