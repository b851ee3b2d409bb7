"""A timeline.json read back into typed values (`pipeline.load_timeline`): what a program that
takes a run's results (a scheduler's next task, a notebook) works with instead of dicts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.output import timeline
from pipeline.types import Frame, Limits, ModelInfo


@dataclass(frozen=True)
class TimelineSource:
    """The video the timeline is of, as the run was given it."""

    path: str
    duration_ms: int
    size_bytes: int
    frame_rate: float | None = None  # None: not recorded (an earlier version's timeline)


@dataclass(frozen=True)
class TimelineChunk:
    """One piece of the video as it was sent, on the source's clock."""

    index: int
    start_ms: int
    end_ms: int
    size_bytes: int
    frames: int
    reencoded: bool
    attempts: int


@dataclass(frozen=True)
class Timeline:
    """A video's merged result: its frames (time_ms from the source's first frame, strictly
    increasing, each with its concepts' values) and how they were made."""

    source: TimelineSource
    backend: str
    model: ModelInfo
    sample_ms: int
    limits: Limits
    chunks: tuple[TimelineChunk, ...]
    frames: tuple[Frame, ...]


def load_timeline(path: str | os.PathLike[str]) -> Timeline:
    """A timeline.json (or a video's results folder holding one) as typed values; InputError,
    one sentence, if it is missing or is not a timeline."""
    file = Path(path)
    if file.is_dir():
        file = file / "timeline.json"
    try:
        head = timeline.read_head(file)
        frames = tuple(timeline.read_frames(file))
        return _typed(head, frames)
    except FileNotFoundError:
        raise InputError(str(file), "no such file") from None
    except OSError as exc:
        raise InputError(str(file), f"cannot read it: {exc.strerror or exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(str(file), f"not a timeline.json ({type(exc).__name__}: {exc})",
                         ) from None


def _typed(head: dict[str, Any], frames: tuple[Frame, ...]) -> Timeline:
    source, limits = head["source"], head["limits"]
    return Timeline(
        TimelineSource(str(source["path"]), int(source["duration_ms"]),
                       int(source["size_bytes"]), _rate(source.get("frame_rate"))),
        str(head["backend"]), ModelInfo(str(head["model"]["id"]), str(head["model"]["name"])),
        int(head["sample_ms"]),
        Limits(limits["mode"], int(limits["max_bytes"]), int(limits["max_duration_ms"])),
        tuple(TimelineChunk(int(c["index"]), int(c["start_ms"]), int(c["end_ms"]),
                            int(c["size_bytes"]), int(c["frames"]), bool(c["reencoded"]),
                            int(c.get("attempts", 1))) for c in head["chunks"]),
        frames)


def _rate(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None
