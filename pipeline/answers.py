"""Answers checked: whether one chunk's answer could be what the chunk gives, before it is
believed (placed on the source clock, saved, merged).

An answer by instant (the local model's, an image batch's: frame n answers the chunk's n-th
instant of the video's sampling grid) is plausible when it answers every instant of the chunk
exactly once. An API's answer for a video (times in ms from the chunk's start) is plausible when
it holds as many frames as the chunk's sampling grid (give or take one), every time inside the
chunk, no time twice. Every value is a finite number from 0 to 1. Every answer passes here
(predict.predict_chunk), the local backend's too.

The tolerances for an API's video answer are what real servers answer (`serve` over copy chunks
of odd lengths and containers, and compact), plus one convention:
- frames: the grid of the chunk's length (Clarifai's middles of each interval from the chunk's
  own start), one fewer to one more. Clarifai's older convention (times at each interval's
  start: 0, 1000, ...) gives one more than the middles when the last interval is under half;
  a server that measures a chunk's file a little shorter than the chunk (its last frame's
  length guessed by the muxer) gives one fewer. A chunk cut just before a still can end in a
  frame its file says lasts one frame but the video holds for seconds: the server samples the
  file, so the low bound is the grid of the file's own length when that is shorter. Never
  fewer than one: any video gives one sample.
- times: from the chunk's start to its end plus one interval (exclusive): a chunk shorter than
  half an interval has its one sample past its end, and a frame at or past the end belongs to
  the next chunk (merge drops it)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from pipeline.errors import ImplausibleAnswerError
from pipeline.media import mp4read
from pipeline.sampling import clarifai_grid, global_grid
from pipeline.types import Chunk, ChunkResult, to_ms


@dataclass(frozen=True)
class Expected:
    """What an answer for one chunk may hold: `frames` on its grid, from `least` to `most`
    frames, times in [first_ms, end_ms) on the answer's clock."""

    frames: int
    least: int
    most: int
    first_ms: int
    end_ms: int


def expected(chunk: Chunk, result: ChunkResult, sample_ms: int,
             span: Fraction | None = None) -> Expected:
    """The bounds for `result`, an answer for `chunk`; `span` is the length the chunk's file
    states (None: the chunk's own)."""
    step = Fraction(sample_ms, 1000)
    if chunk.instants is not None:  # chosen instants: each once, a whole interval each
        frames = len(chunk.instants)
        return Expected(frames, frames, frames, 0,
                        frames if result.clock == "instants" else frames * sample_ms)
    if result.clock == "instants":  # every instant of the chunk, each once: n in [0, count)
        frames = global_grid(chunk.start, chunk.end, sample_ms).count
        return Expected(frames, frames, frames, 0, frames)
    assert result.clock == "chunk", "answers are checked before they are placed"
    lengths = (chunk.duration, chunk.duration if span is None else span)
    frames = clarifai_grid(chunk.duration, sample_ms).count
    low = clarifai_grid(min(lengths), sample_ms).count
    high = clarifai_grid(max(lengths), sample_ms).count
    least = max(min(1, frames), low - 1)
    return Expected(frames, least, high + 1, 0, to_ms(max(lengths) + step))


def check(chunk: Chunk, result: ChunkResult, sample_ms: int, *,
          span: Fraction | None = None) -> None:
    """Raise ImplausibleAnswerError, naming the chunk and the first problem, unless `result`
    could be `chunk`'s answer."""
    found = problem(chunk, result, sample_ms, span)
    if found is not None:
        raise ImplausibleAnswerError(f"chunk {chunk.index}: implausible answer: {found}")


def problem(chunk: Chunk, result: ChunkResult, sample_ms: int,
            span: Fraction | None = None) -> str | None:
    """What makes `result` implausible for `chunk`, in one phrase; None if nothing does."""
    bounds = expected(chunk, result, sample_ms, span)
    times = [f.time_ms for f in result.frames]
    if not bounds.least <= len(times) <= bounds.most:
        return (f"{_frames(len(times))} for a {float(chunk.duration):.1f} s chunk sampled "
                f"every {sample_ms} ms (expected {bounds.frames})")
    outside = next((t for t in times if not bounds.first_ms <= t < bounds.end_ms), None)
    if outside is not None and result.clock == "instants":
        return f"instant {outside} of a chunk holding {bounds.frames}"
    if outside is not None:
        return f"a frame at {outside} ms, outside the {float(chunk.duration):.1f} s chunk"
    slots = [t // sample_ms for t in times] if chunk.instants is not None and \
        result.clock == "chunk" else times
    repeated, count = Counter(slots).most_common(1)[0] if slots else (0, 1)
    if count > 1 and slots is not times:
        return f"{_frames(len(times))} in {len(set(slots))} intervals of {sample_ms} ms"
    if count > 1:
        what = f"instant {repeated}" if result.clock == "instants" else f"{repeated} ms"
        return (f"{_frames(len(times))} at {_times(len(set(times)))} ({what} given {count} "
                "times)")
    return _bad_value(result)


def _bad_value(result: ChunkResult) -> str | None:
    for frame in result.frames:
        for concept in frame.concepts:
            if not (math.isfinite(concept.value) and 0 <= concept.value <= 1):
                return (f"concept {concept.name!r} at {frame.time_ms} ms is {concept.value!r}, "
                        "not a value from 0 to 1")
    return None


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _times(n: int) -> str:
    return f"{n} distinct time" if n == 1 else f"{n} distinct times"


def file_span(chunk: Chunk) -> Fraction | None:
    """The length a server measures for a chunk sent as a file: its MP4 video track's, as the
    file states it (read from `moov` alone). None for a chunk built from a sample table, whose
    samples keep their exact durations (its length is the chunk's), or a file that is no MP4."""
    if chunk.packets is not None:
        return None
    track = mp4read.video_track(chunk.path)
    return track.duration if track is not None and track.frames else None
