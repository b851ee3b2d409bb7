"""A requests-per-second limit shared by every thread of a run (retries count too)."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate` request starts per second, over any window, across all threads.

    A sliding window of `capacity` starts: a burst of up to `capacity` goes at once (so a few
    chunks in flight do not queue behind each other), and no window of `capacity / rate` seconds
    ever holds more than `capacity` starts. Clarifai counts requests per second per user, so
    spacing within the window does not matter; the count in any second does."""

    def __init__(self, rate: float, *, slack: float = 0.02,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, not {rate}")
        self.rate = rate
        self.capacity = max(1, math.floor(rate))
        # The server counts arrivals, not our starts; `slack` absorbs the network's jitter.
        self.window = self.capacity / rate + slack
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
