"""SIGTERM and Ctrl-C (SIGINT) stop a run cleanly; a second signal abandons it at once.

The first signal sets the run's stop flag (batch.stopping): chunks in flight finish and are
saved, nothing new is sent, the CLI exits 130. A second signal exits 130 at once; that is safe
because every file is written atomically, so a rerun resumes from the last saved chunk."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline.batch.stopping import StopFlag

log = logging.getLogger("pipeline")

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells and schedulers read as "interrupted"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
        flag.set()
        log.warning("%s: stopping; chunks in flight finish and are saved, nothing new is sent "
                    "(send it again to abandon them)", name)

    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
