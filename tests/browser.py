"""A real browser for tests: Debian's headless Chromium driven over the DevTools protocol on a
pipe (--remote-debugging-pipe: commands on its fd 3, answers and events on its fd 4, JSON
separated by NUL bytes; the standard library is enough, no port, no websocket client).

Every request a page makes is seen (Network.requestWillBeSent: http(s), file: and data: alike),
and the browser's networking is pointed at a closed port on 127.0.0.1 (as its proxy, with
every host name unresolvable), so nothing could leave the machine anyway."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image, ImageStat

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio", "--log-level=3"]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Rendered:
    png: bytes
    requests: list[str]  # every URL the page asked for, itself included

    def fetched(self, page: Path) -> list[str]:
        """Requests other than the page itself and inline data: URIs."""
        own = page.resolve().as_uri()
        return [u for u in self.requests if u != own and not u.startswith("data:")]


class Browser:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-test-")
        cmd_read, cmd_write = os.pipe()
        evt_read, evt_write = os.pipe()
        # Chromium wants the pipe on fds 3 and 4 exactly: bash puts them there (moved above 100
        # first so its redirections cannot clobber them; no preexec_fn in a threaded process).
        child_in = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 100)
        child_out = fcntl.fcntl(evt_write, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(cmd_read)
        os.close(evt_write)
        argv = [CHROMIUM, *FLAGS, "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                f"--proxy-server=127.0.0.1:{closed_port()}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "about:blank"]
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c",
             f'exec "$0" "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-',
             *argv], pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"})
        os.close(child_in)
        os.close(child_out)
        self._write, self._read = cmd_write, evt_read
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def render(self, page: Path, size: tuple[int, int] = (1400, 2000)) -> Rendered:
        """Open `page` in a new tab, wait for its load event, take a screenshot."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Network.enable", "Page.enable"):
            self.send(method, session=session)
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
            session=session)
        self.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        self._wait_event("Page.loadEventFired", session)
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
        requests = [e["params"]["request"]["url"] for e in self._events
                    if e.get("method") == "Network.requestWillBeSent"
                    and e.get("sessionId") == session]
        self.send("Target.closeTarget", {"targetId": target})
        self._events = [e for e in self._events if e.get("sessionId") != session]
        return Rendered(base64.b64decode(shot["data"]), requests)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self._events.append(reply)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        if any(e.get("method") == method and e.get("sessionId") == session
               for e in self._events):
            return
        while True:
            event = self._message(deadline)
            self._events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed its pipe: {self._stderr()}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _stderr(self) -> str:
        self.proc.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")[-800:]

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        os.close(self._write)
        os.close(self._read)
        self._profile.cleanup()


def looks_blank(png: Path | bytes) -> bool:
    """Fewer than 64 colours, or a grey level that hardly varies: nothing was drawn."""
    import io
    image = Image.open(io.BytesIO(png) if isinstance(png, bytes) else png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    return len(colours) < 64 or ImageStat.Stat(image.convert("L")).stddev[0] < 3.0
