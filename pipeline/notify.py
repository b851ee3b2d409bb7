"""Completion callbacks (--notify URL): an HTTP POST with a JSON body when each video ends and
when the batch ends, signed as webhooks are (GitHub's X-Hub-Signature-256, Stripe's
Stripe-Signature): header `X-Video-Pipeline-Signature: sha256=<hex>`, the HMAC-SHA256 of the
body's exact bytes under the secret VIDEO_PIPELINE_NOTIFY_SECRET. A receiver computes the same
over the bytes it received and compares in constant time (`verify`).

Deliveries never hold the run back: events go on a queue that one background thread empties.
Each event is tried until it is delivered (any 2xx answer; redirects are not followed) or
`Bounds.settle` seconds have passed since its first attempt, with exponential backoff and
jitter between attempts, each attempt allowed `Bounds.attempt` seconds to connect and to read.
Once one event has failed its whole schedule the receiver is taken to be down: later events
are tried once each until one gets through. At its end the run waits at most `Bounds.drain`
seconds for the queue (plus one attempt's allowance for the attempt in flight), then goes:
whatever is left counts as not delivered. What came of the callbacks is noted in summary.json
("notify": delivered, failed, last_error) and never changes the run's exit code.

Every string in a body passes through `redact.text` (no URL query string, no presigned
signature); bodies are built from outcomes, which never hold a key or a credential."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tenacity

from pipeline import redact
from pipeline.errors import DeliveryError
from pipeline.version import __version__

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Video-Pipeline-Signature"
EVENT_HEADER = "X-Video-Pipeline-Event"
DELIVERY_HEADER = "X-Video-Pipeline-Delivery"


@dataclass(frozen=True)
class Bounds:
    """How long callbacks may take, in seconds."""

    attempt: float = 5.0  # one POST: to connect, and for each read of the answer
    settle: float = 30.0  # one event: retried until this long after its first attempt
    drain: float = 10.0  # the run's end: the queue gets this long (plus one `attempt`)
    backoff: float = 0.5  # first backoff window; doubles each attempt
    backoff_cap: float = 8.0


@dataclass(frozen=True)
class Report:
    """What came of a run's callbacks (summary.json's "notify")."""

    delivered: int
    failed: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed,
                "last_error": self.last_error}


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: sha256=<hex of HMAC-SHA256(secret, body)>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` signs `body` under `secret` (constant-time: what a receiver does)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def now_text() -> str:
    """The time now, UTC, as RFC 3339 with milliseconds (2024-05-01T12:00:00.000Z)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrubbed(value: Any) -> Any:
    """`value` with every string in it redacted (`redact.text`), keys and nesting kept."""
    if isinstance(value, str):
        return redact.text(value)
    if isinstance(value, Mapping):
        return {k: scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """One callback: its kind (video.done, batch.finished, ...), its id, and its body's bytes."""

    kind: str
    id: str
    body: bytes


_CLOSE = object()


class Notifier:
    """POSTs events to `url` from a background thread; `close` ends it within its bounds."""

    def __init__(self, url: str, secret: str, *, run: str | None = None,
                 bounds: Bounds | None = None,
                 post: Callable[[str, bytes, Mapping[str, str], float], None] | None = None,
                 ) -> None:
        self.run = run or uuid.uuid4().hex
        self.bounds = bounds or Bounds()
        self._url = url
        self._secret = secret
        self._post = post or http_post
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._abandon = threading.Event()  # the run's end allowance is over: stop trying
        self._lock = threading.Lock()
        self._sent = self._delivered = 0
        self._last_error: str | None = None
        self._down = False  # an event failed its whole schedule: try the next ones once
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def send(self, kind: str, payload: Mapping[str, Any]) -> Event:
        """Queue one event (never blocks, never raises for the receiver's sake)."""
        event_id = uuid.uuid4().hex
        body = {"event": kind, "id": event_id, "time": now_text(), "run": self.run,
                **scrubbed(payload)}
        event = Event(kind, event_id, json.dumps(body, ensure_ascii=False,
                                                 separators=(",", ":")).encode("utf-8"))
        with self._lock:
            self._sent += 1
        self._queue.put(event)
        return event

    def close(self, *, wait: bool = True) -> Report:
        """Wait for the queue within `bounds.drain` (and the attempt in flight), then stop:
        what is not delivered by then counts as failed. `wait` False: stop now (the run is
        ending on an error; what is queued is not sent)."""
        self._queue.put(_CLOSE)
        if wait:
            self._thread.join(self.bounds.drain)
        if self._thread.is_alive():
            self._abandon.set()
            if wait:
                self._thread.join(self.bounds.attempt)
        return self.report()

    def report(self) -> Report:
        with self._lock:
            failed = self._sent - self._delivered
            last = self._last_error
            if failed and last is None:
                last = f"not delivered within the run's end allowance ({self.bounds.drain:g} s)"
            return Report(self._delivered, failed, last)

    # -- the delivering thread -----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE or self._abandon.is_set():
                return
            assert isinstance(item, Event)
            self._deliver(item)

    def _deliver(self, event: Event) -> None:
        try:
            self._retrying()(self._attempt, event)
        except DeliveryError as exc:
            with self._lock:
                self._last_error = str(exc)
            self._down = True
            log.warning("--notify: %s event not delivered: %s", event.kind, exc)
            return
        with self._lock:
            self._delivered += 1
        self._down = False

    def _retrying(self) -> tenacity.Retrying:
        bounds = self.bounds
        stop = tenacity.stop_after_attempt(1) if self._down else tenacity.stop_after_delay(
            bounds.settle)
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(DeliveryError),
            stop=tenacity.stop_any(stop, _Abandoned(self._abandon)),
            wait=tenacity.wait_random_exponential(multiplier=bounds.backoff,
                                                  max=bounds.backoff_cap),
            sleep=self._pause, before_sleep=_log_attempt, reraise=True)

    def _pause(self, seconds: float) -> None:
        """A backoff, cut short when the run's end allowance is over."""
        self._abandon.wait(seconds)

    def _attempt(self, event: Event) -> None:
        headers = {"Content-Type": "application/json",
                   "User-Agent": f"video-pipeline/{__version__}",
                   EVENT_HEADER: event.kind, DELIVERY_HEADER: event.id,
                   SIGNATURE_HEADER: sign(self._secret, event.body)}
        self._post(self._url, event.body, headers, self.bounds.attempt)


class _Abandoned(tenacity.stop.stop_base):
    """Stop retrying once the run has stopped waiting for its callbacks."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


def _log_attempt(state: tenacity.RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome is not None else None
    log.info("--notify: attempt %d failed: %s", state.attempt_number, failure)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: a POST is not replayed elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> None:
    """One POST; DeliveryError (one sentence, the URL not in it: it may hold a token) unless
    the receiver answers 2xx."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(65536)
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"the receiver answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the receiver: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"the connection failed: {_reason(exc)}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"the receiver answered HTTP {status}")


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return redact.text(str(reason)) or type(reason).__name__
