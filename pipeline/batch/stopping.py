"""Stopping a run cleanly: a flag read before every chunk is sent and every video started.

The command line sets it on SIGTERM or Ctrl-C (SIGINT): no new chunk is sent and no new video
started, chunks in flight finish and are checkpointed, summary.json is written, and the CLI
exits 130. On Dask workers a distributed Event plays the flag's part."""

from __future__ import annotations

import threading
from typing import Protocol


class StopCheck(Protocol):
    """Anything with `is_set()`: a threading.Event here, a distributed.Event on Dask workers."""

    def is_set(self) -> bool: ...


class StopFlag:
    """Set once by the first signal (or by a caller); read before every chunk is sent."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()
