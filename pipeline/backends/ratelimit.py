"""A requests-per-second limit shared by every thread of a run (retries count too)."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate` request starts in any 1-second window, across all threads.

    A sliding window of `capacity` starts: a burst of up to `capacity` goes at once (so a few
    chunks in flight do not queue behind each other), and no window of `window` seconds ever
    holds more than `capacity` starts. Clarifai counts requests per second per user, so spacing
    within the second does not matter; the count in any second does. The count is whole: a rate
    of 2.5 allows 2 starts in any second (allowing 3 in some seconds and 2 in others would break
    the promise in the seconds with 3); a rate below 1 allows one start every 1/rate seconds."""

    def __init__(self, rate: float, *, slack: float = 0.02,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number above 0, not {rate}")
        self.rate = rate
        self.capacity = max(1, math.floor(rate))
        # The server counts arrivals, not our starts; `slack` absorbs the network's jitter.
        self.window = max(1.0, 1 / rate) + slack
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may start; return the seconds waited."""
        with self._lock:
            now = self._clock()
            at = self._slot(now)
            self._starts.append(at)
        if at > now:
            self._sleep(at - now)
        return at - now

    def _slot(self, now: float) -> float:
        """The earliest start time >= now that keeps every window within capacity (lock held)."""
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        if len(self._starts) < self.capacity:
            return now
        # Reserved slots may lie in the future; the new one goes one window after the
        # capacity-th latest reservation.
        return max(now, self._starts[-self.capacity] + self.window)
