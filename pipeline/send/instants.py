"""The instants a video is sampled at, as the compact and frames strategies number them: instant
n is (n + 1/2) * sample_ms from the source's first frame, for every n whose instant lies inside
the video (the local backend's grid). A chunk of instants [first, end) starts at first *
sample_ms on the source's clock, so an API that samples it from its own start (the middle of
each interval) lands on the same instants: chunk boundaries never shift the grid."""

from __future__ import annotations

from fractions import Fraction

from pipeline.sampling import Grid, clarifai_grid
from pipeline.types import VideoInfo


def span(info: VideoInfo) -> Fraction:
    """The video stream's length: its first frame's time to its last frame's end (the clock
    the local backend's chunks tile)."""
    assert info.scan is not None
    return info.scan.end - info.scan.origin


def grid(info: VideoInfo, sample_ms: int) -> Grid:
    """Every instant of the video."""
    return clarifai_grid(span(info), sample_ms)


def bounds(first: int, end: int, sample_ms: int, length: Fraction) -> tuple[Fraction, Fraction]:
    """Where a chunk of instants [first, end) starts and ends on the source clock: whole
    intervals, the last one cut at the video's end (as the local backend's last chunk is)."""
    step = Fraction(sample_ms, 1000)
    return first * step, min(end * step, length)
