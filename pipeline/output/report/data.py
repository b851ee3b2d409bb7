"""What a report shows, read from timeline.json alone (streamed, one pass): the source's facts,
the chunks, every frame's values as one array (frames x concepts, 5.8 MB for ten hours of 20
concepts), and the segments: segments.json's when it was made with the same rules over the
same frames, else found again in the same pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError
from pipeline.output import timeline
from pipeline.output.exports import SEGMENTS_JSON, segments_from_dict
from pipeline.output.files import read_json
from pipeline.output.segments import ConceptSegments, Rules, SegmentFinder
from pipeline.types import Frame


@dataclass(frozen=True)
class VideoData:
    head: dict[str, Any]  # timeline.json but its frames
    times: np.ndarray  # int64, ms, one per frame
    ids: list[str]  # concept ids, in order of first appearance
    names: list[str]
    values: np.ndarray  # float64, frames x concepts; 0 where a frame lacks the concept
    concepts: list[ConceptSegments]
    rules: Rules

    @property
    def sample_ms(self) -> int:
        return _sample_ms(self.head)

    @property
    def duration_ms(self) -> int:
        """The source's duration, or the end of the last frame's interval if it says none."""
        said = int(self.head.get("source", {}).get("duration_ms") or 0)
        last = int(self.times[-1]) + self.sample_ms // 2 if len(self.times) else 0
        return max(said, 1) if said else max(last, 1)

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return list(self.head.get("chunks") or [])


class _Columns:
    """Frames into a growing (frames x concepts) array, a column per concept id."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.times = np.empty(4096, np.int64)
        self.values = np.zeros((4096, 8))
        self.count = 0

    def add(self, frame: Frame) -> None:
        n = self.count
        if n == len(self.times):
            self.times = np.resize(self.times, 2 * n)
            self.values = np.vstack([self.values, np.zeros_like(self.values)])
        self.times[n] = frame.time_ms
        row = self.values[n]
        for c in frame.concepts:
            j = self.index.get(c.id)
            if j is None:
                j = self._new_column(c.id, c.name)
                row = self.values[n]
            row[j] = c.value
        self.count = n + 1

    def _new_column(self, concept_id: str, name: str) -> int:
        j = self.index[concept_id] = len(self.names)
        self.names.append(name)
        if j == self.values.shape[1]:
            self.values = np.hstack([self.values, np.zeros_like(self.values)])
        return j


def _sample_ms(head: dict[str, Any]) -> int:
    """The timeline's sampling interval (1000 ms when it says none)."""
    return int(head.get("sample_ms") or 1000)


def load(video_dir: Path, rules: Rules) -> VideoData:
    """The report's data for DIR/VIDEO_ID; InputError if it has no readable timeline.json."""
    path = video_dir / "timeline.json"
    if not path.is_file():
        raise InputError(str(video_dir), "no timeline.json (not a finished video's folder)")
    try:
        head = timeline.read_head(path)
        sample_ms = _sample_ms(head)
        duration = int(head.get("source", {}).get("duration_ms") or 0) or None
        saved = _saved_segments(video_dir, rules, sample_ms)
        finder = SegmentFinder(rules, sample_ms=sample_ms, duration_ms=duration)
        columns = _Columns()
        for frame in timeline.read_frames(path):
            columns.add(frame)
            if saved is None:
                finder.add(frame)
        if saved is not None and saved[1] != columns.count:  # not made over these frames
            saved = None
            finder = _found_again(path, finder)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(str(path), f"not a readable timeline ({exc})") from None
    n, k = columns.count, len(columns.names)
    return VideoData(head, columns.times[:n].copy(), list(columns.index), columns.names,
                     columns.values[:n, :k].copy(),
                     saved[0] if saved is not None else finder.finish(), rules)


def _found_again(path: Path, finder: SegmentFinder) -> SegmentFinder:
    for frame in timeline.read_frames(path):
        finder.add(frame)
    return finder


def _saved_segments(video_dir: Path, rules: Rules,
                    sample_ms: int) -> tuple[list[ConceptSegments], int] | None:
    """segments.json's segments and frame count, if it was made with `rules`."""
    raw = read_json(video_dir / SEGMENTS_JSON)
    if not isinstance(raw, dict) or raw.get("rules") != rules.as_dict(sample_ms):
        return None
    try:
        return segments_from_dict(raw), int(raw["frames"])
    except (KeyError, TypeError, ValueError):
        return None
