"""Helpers for the tests of serve's limits: a web server that drips its answer, flat PNGs
crafted as bytes, `python -m pipeline serve` as a child process with its memory read from
/proc."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


# -- a web server that sends one byte every few seconds --------------------------------------
@dataclass
class Drip:
    """What the dripping server saw: when each of its connections was closed by the client."""

    base: str
    closed: list[float] = field(default_factory=list)
    served: int = 0

    def url(self, where: str) -> str:
        """`/headers/...` drips the status line itself; `/body/...` sends the headers at once
        (Content-Length 1 MB) and drips the body."""
        return f"{self.base}/{where}/v.mp4"


@contextmanager
def drip_server(every: float = 5.0) -> Iterator[Drip]:
    """An HTTP server on 127.0.0.1 that answers every GET one byte every `every` seconds."""
    stop = threading.Event()
    drip = Drip("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            drip.served += 1
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
            if self.path.startswith("/body/"):
                self.wfile.write(head)
                self.wfile.flush()
                head = b""
            try:
                for byte in (head + b"\0" * 1_000_000):
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if stop.wait(every):
                        return
            except OSError:  # the client closed the connection: what the tests look for
                drip.closed.append(time.monotonic())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    drip.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield drip
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


# -- images crafted as bytes -----------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def flat_png(width: int, height: int, rgb: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    """A PNG of one colour, compressed row by row (a 13000x13000 one is ~0.5 MB and never
    exists in memory as pixels here)."""
    row = b"\0" + bytes(rgb) * width
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


# -- serve as a child process ----------------------------------------------------------------
@dataclass
class Served:
    """A `python -m pipeline serve` child process and the port it listens on."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr: Path

    def memory(self, name: str = "VmHWM") -> int:
        """VmHWM (peak resident set) or VmRSS of the process, in bytes."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
        assert found, text
        return int(found.group(1)) * 1024

    def text(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextmanager
def serve_process(tmp: Path, *args: str, key: str) -> Iterator[Served]:
    """`python -m pipeline serve --port 0 ARGS`, stderr to a file; killed after the test if it
    is still running."""
    err = tmp / f"serve-{time.monotonic_ns()}.err"
    with open(err, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--port", "0", *args], cwd=REPO,
            env={**os.environ, "VIDEO_PIPELINE_API_KEY": key}, stderr=sink,
            stdout=subprocess.DEVNULL)
    served = Served(proc, 0, err)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"serving on [\d.]+:(\d+)", served.text())):
            assert proc.poll() is None, f"serve exited: {served.text()}"
            assert time.monotonic() < deadline, "serve did not start in 60 s"
            time.sleep(0.05)
        served.port = int(found.group(1))
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


@contextmanager
def logged_server(folder: Path, key: str) -> Iterator[Any]:
    """Our serve in this process on a free port of 127.0.0.1, requiring `key`, logging every
    request to folder/requests.jsonl; stopped at the end."""
    from pipeline.serve.server import ServeConfig, Server  # gRPC only for the tests that serve
    started = Server(ServeConfig(port=0, api_key=key, request_log=str(folder / "requests.jsonl")))
    started.start()
    try:
        yield started
    finally:
        started.stop(grace=0)


def video(data: bytes = b"", url: str = "") -> Any:
    """A video input of a PostModelOutputs request: bytes, or a URL."""
    from clarifai_grpc.grpc.api import resources_pb2
    return resources_pb2.Input(data=resources_pb2.Data(
        video=resources_pb2.Video(base64=data, url=url)))


def image(data: bytes = b"", url: str = "") -> Any:
    """An image input of a PostModelOutputs request: bytes, or a URL."""
    from clarifai_grpc.grpc.api import resources_pb2
    return resources_pb2.Input(data=resources_pb2.Data(
        image=resources_pb2.Image(base64=data, url=url)))


def logged(server: Any) -> list[dict[str, Any]]:
    """serve's request log, one entry a request."""
    return [json.loads(line) for line in Path(str(server.config.request_log)).read_text()
            .splitlines()]
