"""Merge (pure): put chunk answers on the source's clock and join them into one timeline."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from pipeline import skip
from pipeline.sampling import global_grid
from pipeline.types import Chunk, ChunkResult, Frame, to_ms

log = logging.getLogger(__name__)


def place(chunk: Chunk, result: ChunkResult, sample_ms: int | None = None) -> ChunkResult:
    """`result` on the source clock, the one place this happens: an API's chunk-local times
    offset by the chunk's measured start; instant n (the local model's, an image batch's) at
    the chunk's n-th instant of the video's sampling grid (`sample_ms`), exactly; a result
    already on the source clock as it is. A chunk of chosen instants (--skip-similar) is a
    small video or batch of its own: its n-th frame (by interval, for an API's times) is
    instant `chunk.instants[n]`."""
    if result.clock == "source":
        return result
    if chunk.instants is not None:
        assert sample_ms is not None, "chosen instants are placed on the sampling grid"
        return dataclasses.replace(result, frames=_chosen(chunk.instants, result, sample_ms),
                                   clock="source")
    if result.clock == "chunk":
        frames = tuple(Frame(chunk.start_ms + f.time_ms, f.concepts) for f in result.frames)
    else:
        assert sample_ms is not None, "instants are placed on the sampling grid"
        instants = global_grid(chunk.start, chunk.end, sample_ms).times()
        frames = tuple(Frame(to_ms(chunk.start + instants[f.time_ms]), f.concepts)
                       for f in result.frames)
    return dataclasses.replace(result, frames=frames, clock="source")


def _chosen(instants: Sequence[int], result: ChunkResult, sample_ms: int) -> tuple[Frame, ...]:
    """An API's times are ms from the chunk's start: frame n lies in interval n."""
    per = sample_ms if result.clock == "chunk" else 1
    return tuple(Frame(skip.instant_ms(instants[f.time_ms // per], sample_ms), f.concepts)
                 for f in result.frames)


def timeline(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult],
             selection: skip.Selection | None, sample_ms: int) -> list[Frame]:
    """A video's frames from its chunks' saved answers (on the source clock): merged, or, for a
    video that skipped, every instant filled in from the sent ones."""
    if selection is None:
        return merge(chunks, results)
    sent = skip.by_instant(selection, (f for r in results.values() for f in r.frames),
                           sample_ms)
    return list(skip.fill(selection, sent, sample_ms))


def merge(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult]) -> list[Frame]:
    """Every chunk's frames on the source clock, in time order; times strictly increase.

    A frame a server places at or past the next chunk's start (its own rounding) is dropped, so
    no instant is reported twice at a boundary."""
    ordered = sorted(chunks, key=lambda c: c.start)
    merged: list[Frame] = []
    for i, chunk in enumerate(ordered):
        limit = ordered[i + 1].start_ms if i + 1 < len(ordered) else None
        placed = place(chunk, results[chunk.index])
        for frame in sorted(placed.frames, key=lambda f: f.time_ms):
            at = frame.time_ms
            if merged and at <= merged[-1].time_ms or limit is not None and at >= limit:
                log.debug("chunk %d: frame at %d ms overlaps a neighbour; dropped", i, at)
                continue
            merged.append(frame)
    return merged
