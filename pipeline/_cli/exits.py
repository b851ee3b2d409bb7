"""The exit codes, defined once."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What every command exits with; the only place exit codes are defined.

    OK: every input done (or skipped as already done; inputs deferred as still being written
    do not count as failed); `serve` stopped by a signal. FAILED: at least one input failed
    (the others are done and kept). USAGE: usage or configuration error, nothing processed,
    or a refused key that stopped the run. BUDGET: `run` stopped by --max-billed-frames, no
    input failed otherwise (rerun with a larger budget to finish).
    INTERRUPTED: stopped by SIGTERM or Ctrl-C (128 + SIGINT, what shells and schedulers read
    as interrupted); rerun to resume."""

    OK = 0
    FAILED = 1
    USAGE = 2
    BUDGET = 3
    INTERRUPTED = 130
