"""A loopback HTTP receiver for --notify's callbacks, as a user would write one (the standard
library's hmac, not the pipeline's), misbehaving on purpose when asked: failing the first
requests, or never answering."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delivery:
    """One request the receiver saw."""

    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature header is the body's HMAC-SHA256 under the secret
    answered: int  # the status it was answered with

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many requests before accepting
    url: str = ""
    seen: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in arrival order."""
        with self.lock:
            return [d.event for d in self.seen if 200 <= d.answered < 300]


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@contextmanager
def receiver(secret: str, *, fail_first: int = 0, path: str = "/hook") -> Iterator[Receiver]:
    """A receiver on a free 127.0.0.1 port, verifying every signature in constant time."""
    state = Receiver(secret, fail_first)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            given = self.headers.get("X-Video-Pipeline-Signature", "")
            signed = hmac.compare_digest(expected_signature(secret, body), given)
            with state.lock:
                status = 503 if len(state.seen) < state.fail_first else (204 if signed else 401)
                state.seen.append(Delivery(dict(self.headers), body, signed, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def silent_listener() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a hung receiver)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        listener.close()


def dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
