"""What happened to each input (an Outcome), and summary.json: every input, in input order.

Bookkeeping stays linear in the inputs: summary.json (every input) is written when the run starts
and when it ends, and in between only at doubling intervals (10 s, 20 s, 40 s, ...), so a batch
of thousands of inputs never rewrites it thousands of times; what each input came to is appended
to DIR/progress.jsonl the moment it ends (one line, flushed), so a run killed outright still
leaves a record of every input it finished."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import PipelineError, io_failure
from pipeline.output.files import atomic_write_json


class Status(enum.StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # already done, or another run holds it
    FAILED = "failed"
    DEFERRED = "deferred"  # still being written (or changed while processed): a later run takes it
    PENDING = "pending"  # not reached yet: seen only in the summary of a run that was killed
    STOPPED = "stopped"  # the billing budget was reached (--max-billed-frames): rerun to finish


@dataclass(frozen=True)
class Outcome:
    """What happened to one input; one entry of summary.json."""

    source: str
    status: Status = Status.FAILED
    id: str | None = None
    error: str | None = None  # one sentence: why it failed
    note: str | None = None  # why it was skipped or deferred
    chunks: int = 0  # chunks the video was cut into
    resumed: int = 0  # chunks whose result was saved before this run sent anything for them
    requests: int = 0  # prediction requests sent by this run (retries and re-splits included)
    seconds: float = 0.0
    retries: int = 0  # requests sent again after a failed attempt (pipeline.traffic)
    throttles: int = 0  # attempts the API answered "slow down"
    bytes_sent: int = 0  # media bytes the requests carried, every attempt counted
    frames_sampled: int = 0  # the video's sampled instants
    frames_billed: int = 0  # what this run's requests billed (frames a request x requests)
    frames_carried: int = 0  # instants not sent: they carry an earlier frame's concepts
    audit: dict[str, Any] | None = None  # --skip-similar: how the audited carried frames agree

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "status": str(self.status),
                "error": self.error, "note": self.note, "chunks": self.chunks,
                "resumed": self.resumed, "requests": self.requests,
                "seconds": round(self.seconds, 3), "retries": self.retries,
                "throttles": self.throttles, "bytes_sent": self.bytes_sent,
                "frames_sampled": self.frames_sampled, "frames_billed": self.frames_billed,
                "frames_carried": self.frames_carried,
                **({"audit": self.audit} if self.audit is not None else {})}


def failed(source: str, reason: BaseException | str, **fields: Any) -> Outcome:
    """A failed outcome whose error is one sentence that starts with the source's name
    (`fields`: Outcome's others, passed on)."""
    text = reason if isinstance(reason, str) else describe(reason)
    error = text if text.startswith(source) else f"{source}: {text}"
    return Outcome(source, Status.FAILED, error=error, **fields)


def describe(exc: BaseException) -> str:
    """One line for any failure: ours say what went wrong; a full disk says so; anything else
    is named as an internal error (the traceback is logged at debug level, `-vv`)."""
    disk = io_failure(exc)
    if disk is not None:
        return str(disk)
    if isinstance(exc, PipelineError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def status_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """summary.json's counts: done, skipped and failed always; deferred, pending and stopped
    if any."""
    counts = {str(s): sum(1 for o in outcomes if o.status == s)
              for s in (Status.DONE, Status.SKIPPED, Status.FAILED)}
    for rare in (Status.DEFERRED, Status.PENDING, Status.STOPPED):
        found = sum(1 for o in outcomes if o.status == rare)
        if found:
            counts[str(rare)] = found
    return counts


# The figures a run adds up over its inputs, in the order summary.json gives them.
TOTALS = ("requests", "retries", "throttles", "bytes_sent", "frames_sampled", "frames_billed",
          "frames_carried")


class Counted(Protocol):
    """An input's outcome as it is counted (summary's Outcome, the API's InputOutcome: both
    frozen, so read-only here)."""

    @property
    def requests(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def throttles(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def frames_sampled(self) -> int: ...
    @property
    def frames_billed(self) -> int: ...
    @property
    def frames_carried(self) -> int: ...


def totals(outcomes: Iterable[Counted]) -> dict[str, int]:
    """The run's requests, retries, throttles, bytes sent and frames sampled, billed and
    carried, over its inputs (summary.json, the batch callback, the metrics, the closing line
    all read them from here)."""
    listed = list(outcomes)
    return {name: sum(getattr(o, name) for o in listed) for name in TOTALS}


def write_summary(out: Path, outcomes: Sequence[Outcome],
                  rate: Mapping[str, Any] | None = None) -> None:
    """DIR/summary.json: counts by status, the run's totals, and one entry per input, in
    input order; with `rate`, how the requests were paced (the clarifai backend: the rate
    learned, throttles)."""
    atomic_write_json(out / "summary.json", {
        "counts": status_counts(outcomes), **totals(outcomes),
        "inputs": [o.as_dict() for o in outcomes]} | ({"rate": dict(rate)} if rate else {}))


def add_to_summary(out: Path, key: str, value: Any) -> None:
    """summary.json with one more top-level entry (what the run learnt after writing it: how
    its callbacks went); OSError or ValueError if it cannot be read back or written."""
    path = out / "summary.json"
    with open(path, encoding="utf-8") as fh:
        summary = json.load(fh)
    atomic_write_json(path, {**summary, key: value})


class Bookkeeper:
    """A run's summary.json and progress.jsonl: every input `pending` at the start, each outcome
    as it ends, every input at the end (see the module's docstring for when each is written)."""

    FIRST_INTERVAL_S = 10.0

    def __init__(self, out: Path, outcomes: list[Outcome], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.outcomes = outcomes
        self._clock = clock
        self._interval = self.FIRST_INTERVAL_S
        self._next = clock() + self._interval
        self._journal = open(out / "progress.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.write()

    def record(self, index: int, outcome: Outcome) -> None:
        """One input ended: its line in progress.jsonl; summary.json if its turn has come."""
        self.outcomes[index] = outcome
        entry = {"index": index, **outcome.as_dict()}
        self._journal.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._journal.flush()
        if self._clock() >= self._next:
            self.write()
            self._interval *= 2
            self._next = self._clock() + self._interval

    def write(self) -> None:
        write_summary(self.out, self.outcomes)

    def close(self) -> None:
        self._journal.close()
