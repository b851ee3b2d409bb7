"""Concept segments (pure, streaming): for each concept, the runs of frames whose value is at or
above a threshold, as "sfw from 0:01:02.500 to 0:04:10.500".

Time is exact: a frame stands for its whole sampling interval. Frame times are the middle of
their intervals, so a frame covers the time from halfway since the previous frame to halfway to
the next one; the first frame starts half a sample before its time (never before 0) and the last
ends half a sample after (never after the video's end). The frames of a timeline so tile it,
chunk boundaries included (where an API's per-chunk sampling puts two frames closer or farther
apart than one sample), and a chunk boundary never splits a segment.

A segment starts where its first frame's interval starts and ends where its last frame's ends.
Between two frames at or above the threshold, the time covered by frames below it (or without
the concept) is a gap; a gap of at most `max_gap_ms` (default one sample: a single missed frame)
is bridged, a longer one ends the segment. Segments shorter than `min_segment_ms` are dropped.
`frames`, `max_value` and `mean_value` count the frames at or above the threshold only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline import validate
from pipeline.types import Frame


@dataclass(frozen=True)
class Rules:
    """What makes a segment: the threshold, the longest gap bridged, the shortest kept."""

    min_confidence: float = 0.5
    max_gap_ms: int | None = None  # None: one sample
    min_segment_ms: int = 0

    def __post_init__(self) -> None:
        validate.at_least("--min-confidence", self.min_confidence, 0, at_most=1)
        validate.at_least("--max-gap-ms", self.max_gap_ms, 0)
        validate.at_least("--min-segment-ms", self.min_segment_ms, 0)

    def gap_ms(self, sample_ms: int) -> int:
        return sample_ms if self.max_gap_ms is None else self.max_gap_ms

    def as_dict(self, sample_ms: int) -> dict[str, Any]:
        """The rules as applied (the default gap resolved to the sampling interval)."""
        return {"min_confidence": self.min_confidence, "max_gap_ms": self.gap_ms(sample_ms),
                "min_segment_ms": self.min_segment_ms}


@dataclass(frozen=True, slots=True)
class Segment:
    concept_id: str
    concept_name: str
    start_ms: int
    end_ms: int
    max_value: float
    mean_value: float
    frames: int  # frames at or above the threshold

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass
class ConceptSegments:
    """One concept (as first seen in the timeline) and its segments, in time order."""

    id: str
    name: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def total_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments)


@dataclass
class _Run:
    start_ms: int
    end_ms: int
    max_value: float
    total: float
    frames: int

    def extend(self, end_ms: int, value: float) -> None:
        self.end_ms = end_ms
        self.max_value = max(self.max_value, value)
        self.total += value
        self.frames += 1


class SegmentFinder:
    """Fed frames in time order (`add`), one at a time; `finish` gives every concept's segments.
    Holds one frame (its interval ends halfway to the next frame), the open runs (at most one
    per concept) and the segments found: never the timeline."""

    def __init__(self, rules: Rules, *, sample_ms: int, duration_ms: int | None = None) -> None:
        self.rules = rules
        self.sample_ms = sample_ms
        self.duration_ms = duration_ms
        self._gap = rules.gap_ms(sample_ms)
        self._half = sample_ms // 2
        self._pending: Frame | None = None
        self._pending_start = 0
        self._open: dict[str, _Run] = {}
        self._concepts: dict[str, ConceptSegments] = {}

    def add(self, frame: Frame) -> None:
        pending = self._pending
        if pending is None:
            self._pending_start = max(0, frame.time_ms - self._half)
        else:
            boundary = max(self._pending_start, (pending.time_ms + frame.time_ms) // 2)
            self._take(pending, self._pending_start, boundary)
            self._pending_start = boundary
        self._pending = frame

    def finish(self) -> list[ConceptSegments]:
        """Every concept seen, in order of first appearance, with its segments in time order."""
        pending = self._pending
        if pending is not None:
            end = pending.time_ms + self.sample_ms - self._half
            if self.duration_ms is not None and self.duration_ms > self._pending_start:
                end = min(end, self.duration_ms)
            self._take(pending, self._pending_start, max(end, self._pending_start + 1))
            self._pending = None
        for concept_id, run in list(self._open.items()):
            self._close(concept_id, run)
        self._open.clear()
        return list(self._concepts.values())

    def _take(self, frame: Frame, start: int, end: int) -> None:
        threshold = self.rules.min_confidence
        for c in frame.concepts:
            if c.id not in self._concepts:
                self._concepts[c.id] = ConceptSegments(c.id, c.name)
            if c.value < threshold:
                continue
            run = self._open.get(c.id)
            if run is not None and start - run.end_ms <= self._gap:
                run.extend(end, c.value)
                continue
            if run is not None:
                self._close(c.id, run)
            self._open[c.id] = _Run(start, end, c.value, c.value, 1)

    def _close(self, concept_id: str, run: _Run) -> None:
        if run.end_ms - run.start_ms < self.rules.min_segment_ms:
            return
        concept = self._concepts[concept_id]
        concept.segments.append(Segment(concept_id, concept.name, run.start_ms, run.end_ms,
                                        run.max_value, run.total / run.frames, run.frames))


def find_segments(frames: Iterable[Frame], rules: Rules, *, sample_ms: int,
                  duration_ms: int | None = None) -> list[ConceptSegments]:
    """Every concept's segments over `frames` (any iterable, consumed once)."""
    finder = SegmentFinder(rules, sample_ms=sample_ms, duration_ms=duration_ms)
    for frame in frames:
        finder.add(frame)
    return finder.finish()


def in_time_order(concepts: Iterable[ConceptSegments]) -> list[Segment]:
    """All segments by start time (then concept name): the order of the CSV and the cues."""
    return by_time(s for c in concepts for s in c.segments)


def by_time(segments: Iterable[Segment]) -> list[Segment]:
    return sorted(segments, key=lambda s: (s.start_ms, s.concept_name, s.end_ms))
