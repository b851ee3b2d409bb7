"""Progress bars for the CLI-facing loop (tqdm), off when not a terminal or with --no-progress."""

from __future__ import annotations

import contextlib
import sys
from types import TracebackType
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


class Progress:
    """Counts chunks as they are predicted, across every video of the run."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None  # a tqdm bar: tqdm ships no types
        self._frames = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._stack.enter_context(logging_redirect_tqdm())
            self._bar = tqdm(total=0, unit="chunk", desc="chunks", dynamic_ncols=True)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        self._stack.close()

    def add(self, total: int, already_done: int) -> None:
        if self._bar is not None:
            self._bar.total += total
            self._bar.update(already_done)

    def done(self, count: int = 1, *, frames: int = 0) -> None:
        """`count` chunks finished, holding `frames` predicted frames."""
        if self._bar is not None:
            self._frames += frames
            self._bar.set_postfix(frames=self._frames, refresh=False)
            self._bar.update(count)
