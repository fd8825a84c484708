"""Headless Chromium driven over the DevTools protocol: open a Prefect UI page, click, read, screenshot.

The Prefect UI is a single-page app, so "is it there" means polling the rendered DOM text, as a
person waits for a page to settle. Debian's `chromium` package; no browser download.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One Chromium process with one page; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 1300, timeout: float = 30.0) -> None:
        self.size, self.timeout = (width, height), timeout
        self._ids = itertools.count(1)

    def __enter__(self) -> "Browser":
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self._profile = tempfile.mkdtemp(prefix="indexflow-chromium-")
        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._devtools_port()
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        self._ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.size[0], height=self.size[1],
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + self.timeout
        assert self._proc.stderr is not None
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                return int(found.group(1))
            if not line and self._proc.poll() is not None:
                break
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method: str, **params: Any) -> dict:
        """One DevTools command; events arriving meanwhile are skipped."""
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=self.timeout))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """Poll the rendered text until every needle shows; returns the text (or raises with what showed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.25)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"page never showed {missing}; it showed: {text[:1500]!r}")

    def click_text(self, label: str) -> None:
        """Click the first visible button / tab / link whose own text is exactly `label`."""
        clicked = self.evaluate(f"""(() => {{
            const els = [...document.querySelectorAll('button, a, [role=tab], li, span, div')];
            const el = els.find(e => e.offsetParent !== null && e.innerText && e.innerText.trim() === {json.dumps(label)});
            if (!el) return false;
            el.click();
            return true;
        }})()""")
        if not clicked:
            raise AssertionError(f"nothing to click labelled {label!r}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


def compose(images: list[Path], out: Path, width: int = 1600) -> Path:
    """Stack screenshots into one PNG (rendered by Chromium itself: no imaging library needed)."""
    tags = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
                   f'style="display:block;width:{width}px">' for p in images)
    page = Path(tempfile.mkdtemp(prefix="indexflow-compose-")) / "page.html"
    page.write_text(f"<html><body style='margin:0;background:#1c1c1f'>{tags}</body></html>")
    with Browser(width=width, height=400) as browser:
        browser.open(page.as_uri())
        browser.wait_for_text()
        height = browser.evaluate("Promise.all([...document.images].map(i => i.decode()))"
                                  ".then(() => document.body.scrollHeight)")
        browser.call("Emulation.setDeviceMetricsOverride", width=width, height=int(height), deviceScaleFactor=1,
                     mobile=False)
        browser.screenshot(out)
    shutil.rmtree(page.parent, ignore_errors=True)
    return out
