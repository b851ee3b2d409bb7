"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, for the download tests: it cuts
a body short, drips it a byte at a time, ignores Range, or sends it chunked. The same server
answers HEAD and GET of /BUCKET/KEY as an S3-compatible endpoint would (it checks no
signature), so an s3:// source can misbehave the same ways."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Behaviour:
    """What the server does; a test may change it between runs (the server reads it per
    request)."""

    body: bytes
    etag: str = '"v1"'
    ranges: bool = True  # answer a Range with 206; False: 200 with the whole body
    chunked: bool = False  # the 200 goes chunked, with no Content-Length
    cut: bool = False  # a whole body: declare its size (or send it chunked), send half, close
    cut_ranges: bool = False  # a 206: declare its size, send half, close
    drip: float | None = None  # a whole body: one byte every `drip` seconds


@dataclass
class Served:
    """The running server: its address, what it does, and what it saw."""

    base: str
    behaviour: Behaviour
    closing: threading.Event
    whole_gets: list[float] = field(default_factory=list)  # when each whole-body GET began
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (method, Range)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a dripping answer must not hold up the test's end
    served: Served

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gives up mid-body breaks the pipe: that is the point


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._record()
        self._head(200, len(self.server.served.behaviour.body))
        self.end_headers()

    def do_GET(self) -> None:
        self._record()
        how = self.server.served.behaviour
        asked = _RANGE.match(self.headers.get("Range") or "")
        if asked and how.ranges and not how.chunked:
            self._ranged(how, int(asked.group(1)), asked.group(2))
            return
        self.server.served.whole_gets.append(time.monotonic())
        if how.chunked:
            self._chunked(how)
            return
        self._head(200, len(how.body))
        self.end_headers()
        if how.drip is not None:
            self._drip(how.body, how.drip)
        elif how.cut:
            self._cut(how.body)
        else:
            self.wfile.write(how.body)

    def _record(self) -> None:
        self.server.served.requests.append((self.command, self.headers.get("Range")))

    def _head(self, status: int, length: int | None, **extra: str) -> None:
        how = self.server.served.behaviour
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("ETag", how.etag)
        self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
        self.send_header("Accept-Ranges", "bytes" if how.ranges else "none")
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)

    def _ranged(self, how: Behaviour, start: int, end_text: str) -> None:
        size = len(how.body)
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        end = min(int(end_text) if end_text else size - 1, size - 1)
        part = how.body[start:end + 1]
        self._head(206, len(part), Content_Range=f"bytes {start}-{end}/{size}")
        self.end_headers()
        if how.cut_ranges:
            self._cut(part)
        else:
            self.wfile.write(part)

    def _chunked(self, how: Behaviour) -> None:
        self._head(200, None, Transfer_Encoding="chunked")
        self.end_headers()
        step = 1 if how.drip is not None else 64 * 1024
        for at in range(0, len(how.body) // 2 if how.cut else len(how.body), step):
            piece = how.body[at:at + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if how.drip is not None:
                self.wfile.flush()
                if self.server.served.closing.wait(how.drip):
                    return
        if how.cut:  # no last chunk: the connection closes mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _cut(self, body: bytes) -> None:
        self.wfile.write(body[:len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _drip(self, body: bytes, every: float) -> None:
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            if self.server.served.closing.wait(every):
                return


@contextmanager
def bad_server(behaviour: Behaviour) -> Iterator[Served]:
    """The server, on a free 127.0.0.1 port, for the block's length."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.served = Served(f"http://127.0.0.1:{server.server_address[1]}", behaviour,
                           threading.Event())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.served
    finally:
        server.served.closing.set()
        server.shutdown()
        server.server_close()
