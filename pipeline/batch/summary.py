"""What happened to each input (an Outcome), and summary.json: every input, in input order."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, io_failure
from pipeline.output.files import atomic_write_json


class Status(enum.StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # already done, or another run holds it
    FAILED = "failed"
    PENDING = "pending"  # not reached yet: seen only in the summary of a run that was killed


@dataclass(frozen=True)
class Outcome:
    """What happened to one input; one entry of summary.json."""

    source: str
    status: Status = Status.FAILED
    id: str | None = None
    error: str | None = None  # one sentence: why it failed
    note: str | None = None  # why it was skipped: already done, or another run has it
    chunks: int = 0  # chunks the video was cut into
    resumed: int = 0  # chunks whose result was saved before this run sent anything for them
    requests: int = 0  # prediction requests sent by this run (retries and re-splits included)
    seconds: float = 0.0

    def but(self, **changes: Any) -> Outcome:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "status": str(self.status),
                "error": self.error, "note": self.note, "chunks": self.chunks,
                "resumed": self.resumed, "requests": self.requests,
                "seconds": round(self.seconds, 3)}


def failed(source: str, reason: BaseException | str, **fields: Any) -> Outcome:
    """A failed outcome whose error is one sentence that starts with the source's name."""
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


def write_summary(out: Path, outcomes: Sequence[Outcome]) -> None:
    """DIR/summary.json: counts by status and one entry per input, in input order."""
    counts = {str(s): sum(1 for o in outcomes if o.status == s)
              for s in (Status.DONE, Status.SKIPPED, Status.FAILED)}
    pending = sum(1 for o in outcomes if o.status == Status.PENDING)
    if pending:
        counts[str(Status.PENDING)] = pending
    atomic_write_json(out / "summary.json", {
        "counts": counts, "requests": sum(o.requests for o in outcomes),
        "inputs": [o.as_dict() for o in outcomes]})
