"""The sampling grid: which instants of a video the API scores (pure; no I/O).

Clarifai samples one frame per `sample_ms` interval and labels it with the interval's middle
(500, 1500, ... ms at 1000 ms). Every instant whose middle lies inside the video is sampled, and
a video shorter than half an interval still gets its one sample (the frame shown at that instant
is its last)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Grid:
    """Sampling instants first, first + step, ... (seconds from the file's first frame)."""

    first: Fraction
    step: Fraction
    count: int

    def times(self) -> list[Fraction]:
        return [self.first + i * self.step for i in range(self.count)]


def clarifai_grid(duration: Fraction, sample_ms: int) -> Grid:
    """Clarifai's sampling of a whole file: the middle of each interval, inside the file; one at
    least."""
    step = Fraction(sample_ms, 1000)
    first = step / 2
    inside = math.ceil((duration - first) / step) if duration > first else 0
    return Grid(first, step, max(1, inside))


def global_grid(start: Fraction, end: Fraction, sample_ms: int) -> Grid:
    """The whole video's grid (middles of intervals from its first frame) restricted to a chunk
    [start, end), as times from the chunk's first frame. The first chunk (start 0) always holds
    the video's first instant, as `clarifai_grid` gives one to a video of any length."""
    step = Fraction(sample_ms, 1000)
    k0 = max(0, math.ceil((start - step / 2) / step))
    first = k0 * step + step / 2
    count = max(0, math.ceil((end - first) / step))
    if start == 0 and end > 0:
        count = max(1, count)
    return Grid(first - start, step, count)


def chunk_grid(start: Fraction, end: Fraction, instants: tuple[int, ...] | None,
               sample_ms: int) -> Grid:
    """What a chunk's media holds, as a grid from its first frame: the whole video's grid
    within [start, end); or, for a chunk of chosen instants (--skip-similar), one frame per
    instant, each one interval long."""
    if instants is None:
        return global_grid(start, end, sample_ms)
    return clarifai_grid(len(instants) * Fraction(sample_ms, 1000), sample_ms)
