"""Merge (pure): put chunk answers on the source's clock and join them into one timeline."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from pipeline.types import Chunk, ChunkResult, Frame

log = logging.getLogger(__name__)


def place(chunk: Chunk, result: ChunkResult) -> ChunkResult:
    """`result` on the source clock: an API's chunk-local times offset by the chunk's measured
    start (the one place this happens); a result already on the source clock as it is."""
    if result.clock == "source":
        return result
    frames = tuple(Frame(chunk.start_ms + f.time_ms, f.concepts) for f in result.frames)
    return dataclasses.replace(result, frames=frames, clock="source")


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
