"""Stopping a run cleanly on SIGTERM or Ctrl-C (SIGINT).

The first signal sets a flag: no new chunk is sent and no new video started, chunks in flight
finish and are checkpointed, summary.json is written, and the CLI exits 130. A second signal
abandons the chunks in flight at once (exit 130 too); that is safe because every file is written
atomically, so a rerun resumes from the last saved chunk either way."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells and schedulers read as "interrupted"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopCheck(Protocol):
    """Anything with `is_set()`: a threading.Event here, a distributed.Event on Dask workers."""

    def is_set(self) -> bool: ...


class StopFlag:
    """Set once by the first signal (or by a caller); read before every chunk is sent."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGTERM and SIGINT to `flag` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if flag.is_set():
            print(f"video-pipeline: {name} again: abandoning chunks in flight; "
                  "finished work is saved, rerun to resume", file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        flag.set(name)
        log.warning("%s: stopping; chunks in flight finish and are saved, nothing new is sent "
                    "(send it again to abandon them)", name)

    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
