"""How the clarifai backend paces its requests: a fixed limit (`--rate-limit R`, the sliding
window of `ratelimit`) or one learned from the API's answers (`--rate-limit auto`, the
controller of `adaptive`, in this process here, or on a Dask scheduler in `batch.dask_rate`).

Every request asks `start()` for its turn (every attempt: retries count) and says how it was
answered (`answered`). With a learned rate the chunks in flight follow Little's law (`little`):
as many as the rate times the latency needs, with headroom, so that the rate, not the pool,
holds requests back; `InFlightGate` holds the run's pool to that number."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pipeline.backends.adaptive import TUNING, Controller, Pacer, Ticket, Tuning
from pipeline.backends.rate_memory import RateMemory, Remembered
from pipeline.backends.rate_memory import digest as key_digest
from pipeline.backends.ratelimit import RateLimiter

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]
HEADROOM = 1.5  # chunks in flight: the rate x the latency x this, plus one
FIRST_LATENCY = 1.0  # seconds assumed before any answer is measured
_SMOOTHING = 0.2  # weight of each new latency in the running average


def little(rate: float, latency: float, most: int) -> int:
    """Chunks in flight the rate needs at this latency (Little's law), from 2 to `most`."""
    return max(2, min(most, math.ceil(rate * latency * HEADROOM) + 1))


@dataclass(frozen=True)
class RateReport:
    """How a run's requests were paced: summary.json's "rate" and the closing log line."""

    mode: Literal["auto", "fixed"]
    requests: int
    throttled: int
    limit: float | None = None  # the fixed limit
    start: float | None = None  # the learned rate's start, and where it ended
    learned: float | None = None
    stated: float | None = None  # the limit the API stated in its throttles

    def as_dict(self) -> dict[str, Any]:
        found = {"mode": self.mode, "limit": self.limit, "start": self.start,
                 "learned": self.learned, "stated_limit": self.stated}
        return {**{k: v for k, v in found.items() if v is not None},
                "throttled": self.throttled, "requests": self.requests}

    def describe(self) -> str:
        share = f"{self.throttled} of {self.requests} requests throttled"
        if self.mode == "fixed":
            return f"rate: fixed at {self.limit:g} requests/s; {share}"
        return (f"rate: learned {self.learned:g} requests/s for this key (started at "
                f"{self.start:g}); {share}")


class RateControl(Protocol):
    """Turns for requests, and what their answers teach."""

    gate: InFlightGate | None  # holds the pool to the chunks in flight the rate needs

    def start(self) -> Ticket | None:
        """Block until a request may start (waits through the backend's interruptible sleep)."""
        ...

    def answered(self, ticket: Ticket | None, *, ok: bool, throttled: bool,
                 stated: float | None, seconds: float) -> None:
        """How the request started with `ticket` ended: accepted (`ok`), throttled (and the
        limit the API stated, if it did), or neither; `seconds` from start to answer."""
        ...

    def report(self) -> RateReport: ...

    def close(self) -> None:
        """The run is over (a learned rate is remembered)."""
        ...


class InFlightGate:
    """At most `limit` tasks inside at once; the limit may change while tasks wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy = 0
        self._changed = threading.Condition()

    def resize(self, limit: int) -> None:
        with self._changed:
            if limit != self.limit:
                self.limit = limit
                self._changed.notify_all()

    def enter(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._busy < self.limit)
            self._busy += 1

    def leave(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify()


class FixedRate:
    """`--rate-limit R`: today's sliding window, whatever the answers say."""

    gate: InFlightGate | None = None

    def __init__(self, rate: float, sleep: Sleep) -> None:
        self._limiter = RateLimiter(rate, sleep=sleep)
        self._lock = threading.Lock()
        self._requests = 0
        self._throttled = 0

    def start(self) -> None:
        self._limiter.acquire()
        with self._lock:
            self._requests += 1

    def answered(self, ticket: Ticket | None, *, ok: bool, throttled: bool,
                 stated: float | None, seconds: float) -> None:
        if throttled:
            with self._lock:
                self._throttled += 1

    def report(self) -> RateReport:
        return RateReport("fixed", self._requests, self._throttled, limit=self._limiter.rate)

    def close(self) -> None:
        pass


class AdaptiveRate:
    """`--rate-limit auto` in this process: one controller and one pacer for every thread.
    `memory` and `digest`: where the learned rate is remembered, under the key's digest."""

    def __init__(self, controller: Controller, sleep: Sleep, *, in_flight: int | None = None,
                 memory: RateMemory | None = None, digest: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self._most = in_flight
        self.gate = None if in_flight is None else InFlightGate(
            little(controller.rate, FIRST_LATENCY, in_flight))
        self._pacer = Pacer(controller)
        self._sleep = sleep
        self._clock = clock
        self._memory, self._digest = memory, digest
        self._began = controller.rate
        self._latency = FIRST_LATENCY
        self._lock = threading.Lock()

    @classmethod
    def for_key(cls, sleep: Sleep, *, api_base: str | None, key: str, most: float | None,
                cache_dir: str | None, in_flight: int | None) -> AdaptiveRate:
        """A controller starting where the last run with this key settled (if remembered);
        a gate for up to `in_flight` chunks (None: the pool is what the user set)."""
        memory = RateMemory(cache_dir) if cache_dir else None
        digest = None if memory is None else key_digest(memory.salt, api_base, key)
        known = None if memory is None or digest is None else memory.recall(digest)
        return cls(controller_for(known, most), sleep, in_flight=in_flight, memory=memory,
                   digest=digest)

    def start(self) -> Ticket:
        while True:
            with self._lock:
                got = self._pacer.take(self._clock())
            if isinstance(got, Ticket):
                return got
            self._sleep(got)

    def answered(self, ticket: Ticket | None, *, ok: bool, throttled: bool,
                 stated: float | None, seconds: float) -> None:
        assert ticket is not None
        with self._lock:
            if throttled:
                before = self.controller.rate
                if self.controller.throttled(ticket, self._clock(), stated):
                    log.info("rate: throttled at %.2f requests/s; now %.2f", before,
                             self.controller.rate)
            elif ok:
                self._latency += _SMOOTHING * (seconds - self._latency)
                self.controller.succeeded(ticket)
            rate = self.controller.rate
        if self.gate is not None and self._most is not None:
            self.gate.resize(little(rate, self._latency, self._most))

    def report(self) -> RateReport:
        with self._lock:
            c = self.controller
            return RateReport("auto", self._pacer.starts, c.throttles, start=round(self._began, 3),
                              learned=c.learned(), stated=c.stated)

    def close(self) -> None:
        if self._memory is None or self._digest is None:
            return
        report = self.report()
        if report.learned is not None:
            self._memory.remember(self._digest, Remembered(report.learned, report.stated))


def controller_for(known: Remembered | None, most: float | None,
                   tuning: Tuning = TUNING) -> Controller:
    """A cold controller, or one that starts at a remembered rate: the plateau is that rate,
    probed above as after any cut. The limit the API stated then is not a cap: a key's plan
    may have been raised since, and only a throttle states the limit of now."""
    if known is None:
        return Controller(tuning, most=most)
    return Controller(tuning, start=known.rate, too_much=known.rate / tuning.settle, most=most)
