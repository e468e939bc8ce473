"""A minimal Chrome DevTools Protocol client for the browser tests: Debian's headless Chromium,
driven over --remote-debugging-pipe (the same protocol puppeteer speaks, carried on two pipes
instead of a WebSocket: no port to collide with, and Chromium can live in another network
namespace than the test)."""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
]


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium; `prefix` runs it elsewhere (["ip", "netns", "exec", ns])."""

    def __init__(self, prefix=(), log_path=None):
        self.profile = tempfile.mkdtemp(prefix="ve-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Only the two ends the child needs survive its exec (the pipes are close-on-exec, the
        # dup2 copies at 3 and 4 are not).

        def place_pipes():
            # Chromium reads commands on fd 3 and writes replies on fd 4.
            # Ends already sitting at 3 or 4 must not be overwritten first; dup2 onto itself
            # would keep close-on-exec, so inheritability is set explicitly.
            r, w = to_browser_r, from_browser_w
            if w == 3:
                w = os.dup(w)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)
            os.setsid()

        chromium = find_chromium()
        if not chromium:
            raise CdpError("chromium not installed (scripts/deps installs it)")
        self.log = open(log_path or os.devnull, "w")
        self.proc = subprocess.Popen(
            list(prefix) + [chromium] + CHROMIUM_FLAGS +
            [f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=place_pipes, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next_id = 0
        self._replies = {}
        self.events = []
        self.handlers = []

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- wire ---------------------------------------------------------------------------------
    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self._from_browser], [], [], left)
            if not r:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CdpError("chromium closed the DevTools pipe (exit %s)" % self.proc.poll())
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _pump(self, deadline):
        """Reads one message: a reply is filed by id, an event queued and shown to the handlers
        (which may send commands themselves). False when the deadline passed."""
        m = self._read_message(deadline)
        if m is None:
            return False
        if "id" in m:
            self._replies[m["id"]] = m
            return True
        for handler in list(self.handlers):
            if handler(m):
                return True  # consumed
        self.events.append(m)
        return True

    def send(self, method, params=None, session=None, timeout=15):
        self._next_id += 1
        my_id = self._next_id
        msg = {"id": my_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._to_browser, data)
            data = data[n:]
        deadline = time.time() + timeout
        while my_id not in self._replies:
            if not self._pump(deadline):
                raise CdpError(f"{method}: no answer within {timeout} s")
        m = self._replies.pop(my_id)
        if "error" in m:
            raise CdpError(f"{method}: {m['error']}")
        return m.get("result", {})

    def wait_event(self, method, session=None, timeout=15, match=None):
        deadline = time.time() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and (session is None or m.get("sessionId") == session) and \
                        (match is None or match(m.get("params", {}))):
                    return self.events.pop(i).get("params", {})
            if not self._pump(deadline):
                raise CdpError(f"no {method} within {timeout} s")

    def new_page(self, width=1280, height=900, mobile=False):
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.target = target
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.resize(width, height, mobile)
        return page


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    def send(self, method, params=None, timeout=15):
        return self.browser.send(method, params, self.session, timeout)

    def resize(self, width, height, mobile=False):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def goto(self, url, timeout=15):
        self.browser.events = [e for e in self.browser.events if e.get("method") != "Page.loadEventFired"]
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CdpError(f"navigate {url}: {r['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, timeout)

    def eval(self, expression, timeout=15):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True}, timeout)
        if "exceptionDetails" in r:
            raise CdpError(f"script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout=15, interval=0.1):
        """Polls a JS expression until it is truthy; returns its value."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.eval(expression)
            if last:
                return last
            time.sleep(interval)
        raise CdpError(f"still false after {timeout} s: {expression} (last {last!r})")

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.eval("({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})")
            params["clip"] = {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params, timeout=30)["data"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return data


def image_stats(browser, png):
    """(width, height, distinct colours, share of pixels unlike the most common colour) of a PNG,
    measured by decoding it in a blank tab of the browser (no imaging library needed)."""
    page = browser.new_page(200, 200)
    try:
        b64 = base64.b64encode(png).decode()
        return page.eval("""(async () => {
            const img = new Image();
            img.src = "data:image/png;base64,%s";
            await img.decode();
            const c = document.createElement("canvas");
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext("2d");
            g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            const counts = new Map();
            for (let i = 0; i < d.length; i += 4) {
                const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
                counts.set(k, (counts.get(k) || 0) + 1);
            }
            let top = 0;
            for (const v of counts.values()) top = Math.max(top, v);
            const total = d.length / 4;
            return [c.width, c.height, counts.size, 1 - top / total];
        })()""" % b64, timeout=30)
    finally:
        browser.send("Target.closeTarget", {"targetId": page.target})
