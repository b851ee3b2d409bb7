"""Stopping a run: a flag read before every chunk is sent and every video started, and a second
stage that drops what is still in flight.

The command line sets the flag on SIGTERM or Ctrl-C (SIGINT): no new chunk is sent and no new
video started, and chunks in flight get a short grace to finish and be checkpointed. Then the
run *abandons* what is left: every child process is killed, requests in flight are cancelled,
waits (retry backoff, the rate limiter, a download) end at once. summary.json is written and the
CLI exits 130; a rerun resumes from the saved chunks. On Dask workers a distributed Event plays
the flag's part (checked before each chunk)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class StopCheck(Protocol):
    """Anything with `is_set()`: a StopFlag here, a distributed.Event on Dask workers."""

    def is_set(self) -> bool: ...


class StopFlag:
    """Set once by the first signal (or by a caller); `abandon()` is the second stage: what is
    in flight is dropped and the callbacks registered with `on_abandon` run (once each)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.abandoned = threading.Event()  # waits end on it; requests in flight are cancelled
        self._callbacks: list[Callable[[], object]] = []
        self._last_words: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def on_abandon(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the run abandons its work in flight (at once, if it has)."""
        with self._lock:
            if not self.abandoned.is_set():
                self._callbacks.append(callback)
                return
        _call(callback)

    def before_forced_exit(self, callback: Callable[[], object]) -> None:
        """Run `callback` if the process must end before the run has unwound (summary.json
        written as it stands, temporary files removed)."""
        with self._lock:
            self._last_words.append(callback)

    def last_words(self) -> None:
        """Run the `before_forced_exit` callbacks, newest first (once)."""
        with self._lock:
            callbacks, self._last_words = self._last_words[::-1], []
        for callback in callbacks:
            _call(callback)

    def abandon(self) -> None:
        """Drop the work in flight: set the stop flag, wake every wait, run the callbacks."""
        self._event.set()
        with self._lock:
            if self.abandoned.is_set():
                return
            self.abandoned.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback)


def _call(callback: Callable[[], object]) -> None:
    """A callback's failure is logged, never raised: the run is ending anyway."""
    try:
        callback()
    except Exception as exc:  # noqa: BLE001 (whatever a cleanup raises, the others still run)
        log.debug("while stopping: %s", exc, exc_info=exc)
