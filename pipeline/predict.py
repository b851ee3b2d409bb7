"""Predict: one chunk through a backend, answered on the source's clock.

When the API answers that a chunk is too large (or it timed out on every attempt), the chunk is
cut again under half the budget and the pieces are predicted and merged back into one result,
so that a re-split chunk's frames land where an unsplit one's would."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from pipeline.errors import OverLimitError
from pipeline.merge import merge, place
from pipeline.types import Chunk, ChunkResult, Limits, Media, ModelInfo

log = logging.getLogger(__name__)

MAX_RESPLITS = 3

# Cuts a chunk again under smaller limits; the pieces keep their times on the source clock.
Recut = Callable[[Chunk, Limits], list[Chunk]]
# Opens a chunk's media for one request (and lets it go after: a built chunk, a staged object).
Opener = Callable[[Chunk], AbstractContextManager[Media]]


class Backend(Protocol):
    """Answers one chunk at a time; the result says which clock its frame times are on."""

    name: str
    model: ModelInfo

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        """Score `chunk`, whose bytes (or URL) `media` carries."""
        ...

    def close(self) -> None: ...


def predict_chunk(backend: Backend, chunk: Chunk, sample_ms: int, limits: Limits, recut: Recut,
                  opener: Opener, *, depth: int = 0) -> ChunkResult:
    """The chunk's frames on the source clock, re-splitting it if the API says it is too big."""
    try:
        with opener(chunk) as media:
            return place(chunk, backend.predict(chunk, media, sample_ms))
    except OverLimitError as exc:
        if depth >= MAX_RESPLITS:
            raise
        smaller = halved(limits, chunk)
        log.warning("chunk %d (%d bytes) was refused as too large (%s); re-splitting it under "
                    "%d bytes", chunk.index, chunk.size_bytes, exc, smaller.max_bytes)
        pieces = recut(chunk, smaller)
        spent = exc.attempts
    parts = {p.index: predict_chunk(backend, p, sample_ms, smaller, recut, opener,
                                    depth=depth + 1) for p in pieces}
    frames = merge(pieces, parts)
    attempts = spent + sum(r.attempts for r in parts.values())
    return ChunkResult(chunk.index, tuple(frames), attempts, clock="source")


def halved(limits: Limits, chunk: Chunk) -> Limits:
    """Half the chunk's size and length (and no more than the limits), with floors."""
    return Limits(limits.mode, max(100_000, min(limits.max_bytes, chunk.size_bytes) // 2),
                  max(1000, min(limits.max_duration_ms, chunk.end_ms - chunk.start_ms) // 2))
