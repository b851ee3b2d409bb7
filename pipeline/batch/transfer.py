"""Every transfer from a URL source (a whole download, a ranged read, an object in storage)
held to its limits: `stall` seconds without a byte (the socket's own timeout); an overall
deadline of that allowance plus its size at `min_rate` bytes a second (the size its server
declared, or what has arrived when it declared none); the run's stop flag; and never fewer
bytes than the server declared.

A short socket timeout cannot serve for the deadline or the stop flag: after one, Python's
socket file refuses every further read. So a helper thread watches the clock and the flag and
shuts the socket down, which ends a read blocked on it at once; the reader then says why."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ConnectTimeoutError, ReadTimeoutError

from pipeline import redact
from pipeline.batch.stopping import StopCheck
from pipeline.errors import DownloadIncomplete, InputError, Interrupted, PipelineError

MIN_RATE = 50_000.0  # bytes a second: 0.4 Mbit/s; 1 GB may take 5.6 hours
_BLOCK = 64 * 1024
_TICK = 0.25  # seconds between the watcher's looks at the stop flag and the clock
# What reading a body raises: the socket's errors (OSError), http.client's for a body that
# breaks its own framing (HTTPException; ValueError for a bad chunk size or a closed file), and
# botocore's for an object's body (BotoCoreError: a read timed out, a stream cut).
_READ_ERRORS = (OSError, ValueError, http.client.HTTPException, BotoCoreError)


@dataclass(frozen=True)
class Pace:
    """A transfer's limits: `stall` seconds without a byte; overall, `stall` plus its size at
    `min_rate` bytes a second; and once `stop` is set, none at all."""

    stall: float = 30.0
    min_rate: float = MIN_RATE
    stop: StopCheck | None = None

    def allowed(self, size: int) -> float:
        return self.stall + size / self.min_rate


class Watch:
    """One transfer's clock and byte count. While it is open (`with`), a helper thread shuts
    the transfer's socket down once the run is stopping or the deadline has passed."""

    def __init__(self, pace: Pace, shown: str, declared: int | None = None) -> None:
        self.pace = pace
        self.shown = shown
        self.declared = declared  # the size the server declared, once known
        self.received = 0
        self._started = time.monotonic()
        self._verdict: PipelineError | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="download-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.detach()

    def attach(self, fd: int) -> None:
        """Watch the socket behind `fd`. A duplicate of it is kept: shutting that down ends the
        connection, and no other file can take its number meanwhile."""
        sock = socket.socket(fileno=os.dup(fd))
        with self._lock:
            self._forget()
            self._sock = sock
            if self._verdict is not None:
                _shut(sock)

    def detach(self) -> None:
        """Stop watching the socket (before its connection can go back to a pool)."""
        with self._lock:
            self._forget()

    def check(self) -> None:
        """Raise if the transfer must end: the watcher ended it, or the deadline has passed
        (the stop flag is the watcher's to read: on Dask, reading it is a request)."""
        verdict = self._verdict or self._overdue()
        if verdict is not None:
            raise verdict

    def finish(self) -> None:
        """Raise unless the transfer ended whole: in time, with every byte declared."""
        self.check()
        if self.declared is not None and self.received < self.declared:
            raise DownloadIncomplete(self.shown, self.received, self.declared)

    def ended(self, exc: BaseException) -> PipelineError | None:
        """Why `exc` happened, if it is one of ours: a stop, the deadline, or a stall."""
        if isinstance(exc, PipelineError):
            return exc
        verdict = self._verdict or self._overdue(stopping=True)
        if verdict is not None:
            return verdict
        if _timed_out(exc):
            return InputError(self.shown, f"download stalled: no data for {self.pace.stall:g} s "
                                          f"(received {self.received}{self._of} bytes)")
        return None

    def failure(self, exc: BaseException) -> PipelineError:
        """What a failed read of the body amounts to, in one sentence."""
        found = self.ended(exc)
        if found is not None:
            return found
        short = self.declared is not None and self.received < self.declared
        if short or isinstance(exc, http.client.IncompleteRead):  # a chunked body's end lost
            return DownloadIncomplete(self.shown, self.received, self.declared)
        return InputError(self.shown, redact.text(f"download failed: {_reason(exc)}"))

    @property
    def _of(self) -> str:
        return "" if self.declared is None else f" of {self.declared}"

    def _overdue(self, *, stopping: bool = False) -> PipelineError | None:
        if stopping and self._stopping():
            return Interrupted(f"{self.shown}: download stopped: the run is stopping")
        elapsed = time.monotonic() - self._started
        size = self.received if self.declared is None else self.declared
        allowed = self.pace.allowed(size)
        if elapsed <= allowed:
            return None
        return InputError(self.shown, (
            f"download too slow: received {self.received}{self._of} bytes in {elapsed:.1f} s, "
            f"over the {allowed:.1f} s allowed ({self.pace.stall:g} s + {size} bytes at "
            f"{self.pace.min_rate:.0f} bytes/s)"))

    def _stopping(self) -> bool:
        stop = self.pace.stop
        return stop is not None and stop.is_set()

    def _watch(self) -> None:
        while not self._done.wait(_TICK):
            verdict = self._overdue(stopping=True)
            if verdict is not None:
                with self._lock:
                    self._verdict = verdict  # said before the socket goes: the reader reads it
                    if self._sock is not None:
                        _shut(self._sock)
                return

    def _forget(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def pump(read: Callable[[int], bytes], write: Callable[[bytes], object], watch: Watch, *,
         cap: int) -> None:
    """Copy `read`'s blocks to `write` to the end, counting them on `watch`. Raises InputError
    (stalled, too slow, over `cap`, fewer bytes than declared) or Interrupted."""
    while True:
        try:
            block = read(_BLOCK)
        except _READ_ERRORS as exc:
            raise watch.failure(exc) from exc
        if not block:
            break
        watch.received += len(block)
        if watch.received > cap:
            raise InputError(watch.shown, f"download is over the cap of {cap} bytes")
        write(block)
        watch.check()
    watch.finish()


@contextlib.contextmanager
def open_http(url: str, watch: Watch,
              headers: Mapping[str, str] | None = None) -> Iterator[http.client.HTTPResponse]:
    """GET `url` on a connection `watch` watches from the moment it connects. An error status
    or a failure to connect is an InputError (416, to a range from byte 0: an empty body)."""
    opener = urllib.request.build_opener(_HTTPHandler(watch), _HTTPSHandler(watch))
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        resp = opener.open(request, timeout=watch.pace.stall)
    except urllib.error.HTTPError as exc:
        exc.close()
        problem = ("download is empty (0 bytes)" if exc.code == 416
                   else f"download failed: HTTP {exc.code} {exc.reason}")
        raise InputError(watch.shown, problem) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise watch.ended(exc) or InputError(
            watch.shown, redact.text(f"download failed: {_reason(exc)}")) from exc
    with resp:
        yield resp


def declared_size(resp: http.client.HTTPResponse) -> int | None:
    """The body's size as its server declared it (Content-Length); None for a chunked body or
    none declared."""
    if "chunked" in (resp.headers.get("Transfer-Encoding") or "").lower():
        return None
    try:
        size = int(resp.headers.get("Content-Length") or "")
    except ValueError:
        return None
    return size if size >= 0 else None


class _HTTP(http.client.HTTPConnection):
    def __init__(self, host: str, *, watch: Watch, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.watch = watch

    def connect(self) -> None:
        super().connect()
        self.watch.attach(self.sock.fileno())


class _HTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, *, watch: Watch, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.watch = watch

    def connect(self) -> None:
        super().connect()  # the TLS handshake included: it is bounded by the socket timeout
        self.watch.attach(self.sock.fileno())


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # typeshed's protocol for the class leaves out the keywords do_open passes on
        return self.do_open(_HTTP, req, watch=self.watch)  # type: ignore[arg-type]


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPS, req, watch=self.watch)  # type: ignore[arg-type]


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _timed_out(exc: BaseException) -> bool:
    """A socket timeout, as such or wrapped (urllib's URLError, botocore's ReadTimeoutError and
    ConnectTimeoutError: what botocore makes of urllib3's timeouts)."""
    reason = getattr(exc, "reason", None)
    found = reason if isinstance(reason, BaseException) else exc
    return isinstance(found, TimeoutError | ReadTimeoutError | ConnectTimeoutError)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or type(exc).__name__)
