"""A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (no websocket
library needed): chromium reads commands on fd 3 and writes answers and events on fd 4, each a
JSON object followed by a NUL byte.

    with Browser() as b:
        page = b.open("http://127.0.0.1:8080/")
        page.wait_for("document.body.dataset.state === 'ok'")
        page.evaluate("document.title")
        page.screenshot("out.png")
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 1000):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise CDPError("no chromium on PATH")
        self.size = (width, height)
        self.next_id = 0
        self.buffer = b""

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="floe-console-chromium-")
        to_child_r, to_child_w = os.pipe()      # our commands -> chromium fd 3
        from_child_r, from_child_w = os.pipe()  # chromium fd 4 -> us
        # --no-sandbox: CI runs as root, where chromium refuses to start with its sandbox.
        args = [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}",
                "--remote-debugging-pipe", "about:blank"]

        def child_fds():
            # Move both ends above 10 first (either may already sit on 3 or 4), then onto 3 and 4,
            # inheritable. Every other descriptor of ours is close-on-exec (Python's default).
            import fcntl
            r, w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(r, 3, inheritable=True)
            os.dup2(w, 4, inheritable=True)

        self.stderr = open(os.path.join(self.profile, "stderr.log"), "w")
        # close_fds=False: the close step would run after preexec_fn and close 3 and 4.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
                                     close_fds=False, preexec_fn=child_fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self.write_fd, self.read_fd = to_child_w, from_child_r
        return self

    def __exit__(self, *exc):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        os.close(self.write_fd)
        os.close(self.read_fd)
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        import select
        while b"\0" not in self.buffer:
            left = deadline - time.time()
            if left <= 0:
                raise CDPError("chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise CDPError("chromium closed its pipe (exited with %s)" % self.proc.poll())
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error']}")
                return m.get("result", {})

    def open(self, url: str) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False})
        page.navigate(url)
        return page


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def navigate(self, url: str) -> None:
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-serializable), awaiting a promise."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description') or result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30, what: str = "") -> None:
        """Polls `expression` until it is truthy (an observed condition, not a fixed sleep)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except CDPError as e:  # the page may be between documents
                last = e
            time.sleep(0.1)
        raise CDPError(f"timed out after {timeout} s waiting for {what or expression}" + (f" (last error: {last})" if last else ""))

    def screenshot(self, path: str, height: int | None = None, scale: float = 1) -> None:
        """The whole page as PNG; or its top `height` CSS pixels, scaled (a smaller file)."""
        params = {"format": "png", "captureBeyondViewport": True}
        if height or scale != 1:
            width = self.evaluate("document.documentElement.scrollWidth")
            full = self.evaluate("document.documentElement.scrollHeight")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": min(height or full, full), "scale": scale}
        data = self.call("Page.captureScreenshot", params, timeout=60)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
