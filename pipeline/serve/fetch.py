"""`serve` downloads a URL input: http(s) only, public addresses only unless allowed, size
capped, and time limited in all, however slowly the server sends.

A socket timeout bounds one read: a server that sends a byte every few seconds never trips it.
So a watchdog thread shuts the download's sockets once its time is up or its client has gone
(a blocked read then returns at once), and the download reports why it ended."""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import urlparse

from clarifai_grpc.grpc.api.status import status_code_pb2 as codes

from pipeline import redact
from pipeline.errors import ClientGoneError, OverLimitError, RejectedInputError
from pipeline.serve.caller import Caller

_READ = 1 << 16
_POLL = 0.1  # seconds between the watchdog's looks: how late a stop can be


@dataclass(frozen=True)
class FetchLimits:
    """What one download may take."""

    cap: int  # bytes
    seconds: float  # for the whole download: connecting, headers, body, redirects
    allow_local: bool = False


def fetch(url: str, limits: FetchLimits, caller: Caller) -> bytes:
    """GET an http(s) URL within `limits`; stop as soon as `caller` is gone."""
    check_url(url, limits.allow_local)
    with _Watchdog(caller, time.monotonic() + limits.seconds) as watch:
        opener = urllib.request.build_opener(
            _CheckedRedirects(limits.allow_local), _WatchedHTTP(watch), _WatchedHTTPS(watch))
        request = urllib.request.Request(url, headers={"User-Agent": "video-pipeline-serve"})
        try:
            with opener.open(request, timeout=limits.seconds) as resp:
                data = _read_capped(resp, limits.cap)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            watch.raise_if_stopped(limits.seconds)
            # The URL's query string (a presigned signature) never goes back in a message.
            raise RejectedInputError(redact.text(f"could not download {url}: {exc}"),
                                     code=codes.INPUT_VIDEO_DOWNLOAD_FAILED) from None
        watch.raise_if_stopped(limits.seconds)  # a shut socket reads as the end of the data
        return data


def _read_capped(resp: http.client.HTTPResponse, cap: int) -> bytes:
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > cap:
        raise OverLimitError(f"URL input is {length} bytes; the limit is {cap}",
                             code=codes.INPUT_VIDEO_OVER_LIMIT)
    body = io.BytesIO()
    while block := resp.read1(_READ):
        if body.tell() + len(block) > cap:
            raise OverLimitError(f"URL input is over {cap} bytes, the limit",
                                 code=codes.INPUT_VIDEO_OVER_LIMIT)
        body.write(block)
    return body.getvalue()  # its buffer, not a copy: a download is held once


class Slots:
    """Slots for requests with URL inputs, fewer than the workers: a URL that sends a byte every
    few seconds holds its worker for the whole download time, and URLs alone must never hold
    every worker. A request that finds no slot free is told to retry (RPC_REQUEST_QUEUE_FULL)
    rather than wait on a worker."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)

    def claim(self, urls: int) -> Claim | None:
        """A slot held until `urls` downloads are done; None if every slot is taken."""
        if not urls:
            return Claim(None, 0)
        return Claim(self._free, urls) if self._free.acquire(blocking=False) else None


class Claim:
    """One request's download slot (none for a request without URLs)."""

    def __init__(self, slot: threading.BoundedSemaphore | None, urls: int) -> None:
        self._slot = slot
        self._left = urls

    def downloaded(self) -> None:
        """One URL done (or failed): the slot is given back after the last one."""
        self._left -= 1
        if self._left <= 0:
            self.release()

    def release(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None


class _Watchdog:
    """Shuts every socket of one download once its deadline passes or its caller is gone.

    It shuts a duplicate of each socket's descriptor: the same connection, so a read blocked on
    the original returns; and a descriptor of its own, so it can never touch a socket that
    another thread opened after the original was closed."""

    def __init__(self, caller: Caller, deadline: float) -> None:
        self._caller = caller
        self._deadline = deadline
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self.why: str | None = None  # "time" or "gone", once it has shut the sockets

    def __enter__(self) -> _Watchdog:
        threading.Thread(target=self._watch, name="serve-download-watch", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def connection(self, kind: type[http.client.HTTPConnection],
                   ) -> Callable[..., http.client.HTTPConnection]:
        """`kind`, with its TCP connection (TLS's handshake included) watched."""
        def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn = kind(*args, **kwargs)
            # http.client opens its socket through this attribute (CPython's tests set it too).
            conn._create_connection = self._connect  # type: ignore[attr-defined]
            return conn
        return make

    def _connect(self, address: tuple[str, int], timeout: object = None,
                 source: tuple[str, int] | None = None) -> socket.socket:
        sock = socket.create_connection(address, self._timeout(timeout), source)
        with self._lock:
            self._sockets.append(sock.dup())
            if self.why is not None:
                self._shut()
        return sock

    def _timeout(self, asked: object) -> float:
        """What is left of the deadline, or `asked` if sooner (`asked` may be None or socket's
        default-timeout sentinel: the deadline alone, then)."""
        left = max(0.01, self._deadline - time.monotonic())
        return min(left, asked) if isinstance(asked, (int, float)) else left

    def _watch(self) -> None:
        while not self._done.wait(_POLL):
            why = self._reason()
            if why is not None:
                with self._lock:
                    self.why = why
                    self._shut()
                return

    def _reason(self) -> str | None:
        if not self._caller.is_active():
            return "gone"
        return "time" if time.monotonic() >= self._deadline else None

    def _shut(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def raise_if_stopped(self, seconds: float) -> None:
        if self.why == "gone":
            raise ClientGoneError("the client is gone")
        if self.why == "time":
            raise RejectedInputError(f"the download took longer than the {seconds:g} s allowed",
                                     code=codes.INPUT_DOWNLOAD_FAILED)


class _WatchedOpen(urllib.request.AbstractHTTPHandler):
    def __init__(self, watch: _Watchdog) -> None:
        super().__init__()
        self._watch = watch

    # Any: typeshed's type for the connection class is private
    def do_open(self, http_class: Any, req: urllib.request.Request,
                **kwargs: Any) -> http.client.HTTPResponse:
        return super().do_open(self._watch.connection(http_class), req, **kwargs)


class _WatchedHTTP(_WatchedOpen, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_WatchedOpen, urllib.request.HTTPSHandler):
    pass


def check_url(url: str, allow_local: bool) -> None:
    """http(s) only; a host that resolves to a local or private address only if allowed."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RejectedInputError(f"only http(s) URLs are accepted, not {url!r}",
                                 code=codes.INPUT_VIDEO_INVALID_URL)
    if allow_local:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RejectedInputError(f"cannot resolve {parsed.hostname}: {exc}",
                                 code=codes.INPUT_VIDEO_DOWNLOAD_FAILED) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise RejectedInputError(
                f"{parsed.hostname} is a local or private address ({address}); "
                "serve refuses those unless started with --allow-local-urls",
                code=codes.INPUT_VIDEO_INVALID_URL)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect must pass the same checks as the URL it came from."""

    def __init__(self, allow_local: bool) -> None:
        self.allow_local = allow_local

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        check_url(newurl, self.allow_local)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
