"""Merge: a pure function from chunk results and chunk start times to one timeline."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pipeline.types import Chunk, ChunkResult, Frame

log = logging.getLogger(__name__)


def merge(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult]) -> list[Frame]:
    """Re-offset every chunk's frames by the chunk's measured start; times strictly increase.

    A frame a server places at or past the next chunk's start (its own rounding) is dropped, so
    no instant is reported twice at a boundary."""
    ordered = sorted(chunks, key=lambda c: c.start)
    merged: list[Frame] = []
    for i, chunk in enumerate(ordered):
        limit = ordered[i + 1].start_ms if i + 1 < len(ordered) else None
        for frame in sorted(results[chunk.index].frames, key=lambda f: f.time_ms):
            at = chunk.start_ms + frame.time_ms
            if merged and at <= merged[-1].time_ms or limit is not None and at >= limit:
                log.debug("chunk %d: frame at %d ms overlaps a neighbour; dropped", i, at)
                continue
            merged.append(Frame(at, frame.concepts))
    return merged
