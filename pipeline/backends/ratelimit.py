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
    holds more than `capacity` starts (the times when starts were taken). Clarifai counts
    requests per second per user, so spacing within the second does not matter; the count in
    any second does. The count is whole: a rate of 2.5 allows 2 starts in any second (allowing
    3 in some seconds and 2 in others would break the promise in the seconds with 3); a rate
    below 1 allows one start every 1/rate seconds."""

    def __init__(self, rate: float, *, slack: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number above 0, not {rate}")
        self.rate = rate
        self.capacity = max(1, math.floor(rate))
        # The server counts arrivals, not our starts: `slack` absorbs the jitter between a
        # start and its arrival (the network, a busy machine's scheduling; tens of ms seen).
        self.window = max(1.0, 1 / rate) + slack
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may start; return the seconds waited. A start is recorded at
        the moment it is taken, after any wait: a thread that wakes late (a busy machine)
        starts late and pushes the next start back, rather than crowding it."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wake = self.try_start(now)
            if wake is None:
                return waited
            self._sleep(wake - now)
            waited += wake - now

    def try_start(self, now: float) -> float | None:
        """Start a request at `now` if the window allows it (None), else the time at which
        to try again: when the oldest start in the window leaves it. Call with the lock held."""
        # The same sum as the wake time below, so that waking at it always frees the slot.
        while self._starts and self._starts[0] + self.window <= now:
            self._starts.popleft()
        if len(self._starts) < self.capacity:
            self._starts.append(now)
            return None
        return self._starts[0] + self.window
