"""SIGTERM and Ctrl-C (SIGINT): the one place the command line handles them.

`run` ends within 10 seconds, cleanly. The first signal sets the run's stop flag
(batch.stopping): nothing new is sent or started, and chunks in flight have GRACE_S to finish
and be saved. Then the run abandons what is left: child processes are killed, requests in
flight cancelled, every wait ends; the run unwinds, writes summary.json and the CLI exits 130.
If it has not ended by FORCED_EXIT_S after the signal (something that cannot be interrupted: a
storage upload, a stuck file system), summary.json is written as it stands, temporary files
are removed and the process exits 130 at once; a second signal does that at once. Every file
is written atomically, so a rerun resumes from the last saved chunk whichever way the run
ended.

`serve` stops accepting requests at the first signal; those in flight have SERVE_GRACE_S to
finish, and the process ends (exit 0) within a few seconds more, whatever they are doing."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline._cli.exits import ExitCode
from pipeline.batch.stopping import StopFlag

log = logging.getLogger("pipeline")

GRACE_S = 3.0  # chunks in flight may finish and be saved this long after the signal
FORCED_EXIT_S = 8.0  # the process ends by then, whatever it is waiting on
# serve: requests in flight may finish this long after the signal; with the server's own
# checks (a second for abandoned requests, a second for gRPC) it exits within ~6 s.
SERVE_GRACE_S = 4.0
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
            _forced_exit(flag, f"{name} again")
        flag.set()
        log.warning("%s: stopping; chunks in flight have %g s to finish and be saved, nothing "
                    "new is sent (send it again to stop at once)", name, GRACE_S)
        threading.Thread(target=_countdown, args=(flag,), name="stopping", daemon=True).start()

    with _handling(handle):
        yield flag


@contextmanager
def event_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM and SIGINT set while the block runs (main thread only): `serve`
    waits on it, so a second signal while it stops changes nothing."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    with _handling(lambda _signum, _frame: stop.set()):
        yield stop


@contextmanager
def _handling(handle: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_now(code: int) -> None:
    """End the process at once, without waiting for threads still running (stderr flushed)."""
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    os._exit(code)


def _countdown(flag: StopFlag) -> None:
    """Abandon the work in flight after the grace, and end the process if it is still here."""
    if not flag.abandoned.wait(GRACE_S):
        log.info("abandoning the chunks still in flight; rerun to resume")
    flag.abandon()
    threading.Event().wait(FORCED_EXIT_S - GRACE_S)
    _forced_exit(flag, f"still running {FORCED_EXIT_S:g} s after the signal")


def _forced_exit(flag: StopFlag, why: str) -> None:
    flag.abandon()
    flag.last_words()
    try:
        print(f"video-pipeline: {why}: stopping now; finished work is saved, rerun to resume",
              file=sys.stderr, flush=True)
    finally:
        exit_now(ExitCode.INTERRUPTED)
