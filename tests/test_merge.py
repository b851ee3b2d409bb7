"""Merging chunk answers into one timeline (pure)."""

from __future__ import annotations

from fractions import Fraction

from pipeline.merge import merge
from pipeline.types import Chunk, ChunkResult, Concept, Frame

SFW = (Concept("ai_RT20lm2Q", "sfw", 0.9),)


def chunk(index: int, start: str, end: str) -> Chunk:
    return Chunk(index, f"c{index}.mp4", Fraction(start), Fraction(end), 1, 1)


def frames_at(*times: int) -> tuple[Frame, ...]:
    return tuple(Frame(t, SFW) for t in times)


def test_chunk_local_times_are_offset_by_the_measured_start() -> None:
    """Chunk starts 0 and 93.4 s: local 500 ms becomes 500 and 93900 ms."""
    chunks = [chunk(0, "0", "467/5"), chunk(1, "467/5", "190")]
    results = {0: ChunkResult(0, frames_at(500, 1500)), 1: ChunkResult(1, frames_at(500, 1500))}
    assert [f.time_ms for f in merge(chunks, results)] == [500, 1500, 93900, 94900]


def test_frames_past_the_next_chunks_start_are_dropped() -> None:
    """A server that returns an instant past its chunk's end does not duplicate the boundary."""
    chunks = [chunk(0, "0", "2"), chunk(1, "2", "4")]
    results = {0: ChunkResult(0, frames_at(0, 1000, 2000)), 1: ChunkResult(1, frames_at(0, 1000))}
    assert [f.time_ms for f in merge(chunks, results)] == [0, 1000, 2000, 3000]


def test_times_strictly_increase_whatever_order_results_arrive() -> None:
    """Results are ordered by chunk start, not by dictionary or arrival order."""
    chunks = [chunk(1, "5", "10"), chunk(0, "0", "5")]
    results = {1: ChunkResult(1, frames_at(2500, 500)), 0: ChunkResult(0, frames_at(4500, 500))}
    times = [f.time_ms for f in merge(chunks, results)]
    assert times == sorted(set(times)) == [500, 4500, 5500, 7500]
