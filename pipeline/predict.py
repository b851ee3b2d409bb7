"""Predict: one chunk through a backend, answered on the source's clock.

When the API answers that a chunk is too large (or it timed out on every attempt), the chunk is
cut again under half the budget and the pieces are predicted and merged back into one result,
so that a re-split chunk's frames land where an unsplit one's would.

Every answer is checked (`answers`) before it is placed: an implausible one is asked for once
more, then fails its chunk."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from fractions import Fraction
from typing import Protocol

import tenacity

from pipeline import answers
from pipeline.errors import BackendError, ImplausibleAnswerError, OverLimitError
from pipeline.merge import merge, place
from pipeline.sampling import clarifai_grid
from pipeline.types import Chunk, ChunkResult, ImageBatch, Limits, Media, ModelInfo

log = logging.getLogger(__name__)

MAX_RESPLITS = 3

# Cuts a chunk again under smaller limits; the pieces keep their times on the source clock.
Recut = Callable[[Chunk, Limits], list[Chunk]]
# The media of a chunk, opened for one request (and let go after: a built chunk, a staged
# object); a video's transport gives it (send.transport).
MediaOf = Callable[[Chunk], AbstractContextManager[Media]]
# Told a request's billed frames before it is sent (batch.billing); raises to keep it unsent.
Bill = Callable[[int], None]


class Backend(Protocol):
    """Answers one chunk at a time; the result says which clock its frame times are on."""

    name: str
    model: ModelInfo

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        """Score `chunk`, whose bytes (or URL) `media` carries."""
        ...

    def close(self) -> None: ...


def predict_chunk(backend: Backend, chunk: Chunk, sample_ms: int, limits: Limits, recut: Recut,
                  media_of: MediaOf, *, depth: int = 0, bill: Bill | None = None) -> ChunkResult:
    """The chunk's frames on the source clock, re-splitting it if the API says it is too big;
    `bill` is told each request's billed frames before it is sent."""
    try:
        with media_of(chunk) as media:
            asking = _Asking(backend, chunk, media, sample_ms, bill)
            return place(chunk, asking.answer(), sample_ms)
    except OverLimitError as exc:
        if depth >= MAX_RESPLITS:
            raise
        smaller = halved(limits, chunk)
        log.warning("chunk %d (%d bytes) was refused as too large (%s); re-splitting it under "
                    "%d bytes", chunk.index, chunk.size_bytes, exc, smaller.max_bytes)
        pieces = recut(chunk, smaller)
        spent = exc.attempts
    parts = {p.index: predict_chunk(backend, p, sample_ms, smaller, recut, media_of,
                                    depth=depth + 1, bill=bill) for p in pieces}
    frames = merge(pieces, parts)
    attempts = spent + sum(r.attempts for r in parts.values())
    return ChunkResult(chunk.index, tuple(frames), attempts, clock="source")


# An implausible answer may be a server's slip: it is asked for once more, at once.
_ONCE_MORE = tenacity.Retrying(retry=tenacity.retry_if_exception_type(ImplausibleAnswerError),
                               stop=tenacity.stop_after_attempt(2), reraise=True,
                               before_sleep=lambda state: _asking_again(state.outcome))


def _asking_again(outcome: tenacity.Future | None) -> None:
    log.warning("%s; asking once more", outcome.exception() if outcome else "no answer")


class _Asking:
    """One chunk's answer from the backend, checked; the requests of every answer asked for
    are counted in the one taken (or in the error that ends it)."""

    def __init__(self, backend: Backend, chunk: Chunk, media: Media, sample_ms: int,
                 bill: Bill | None = None) -> None:
        self.backend, self.chunk, self.media, self.sample_ms = backend, chunk, media, sample_ms
        self.span: Fraction | None = answers.file_span(chunk)
        self.spent = 0
        self.bill = bill

    def answer(self) -> ChunkResult:
        return _ONCE_MORE.copy()(self._ask)

    def _ask(self) -> ChunkResult:
        if self.bill is not None:
            self.bill(billed_frames(self.chunk, self.media, self.sample_ms, self.span))
        try:
            result = self.backend.predict(self.chunk, self.media, self.sample_ms)
        except BackendError as exc:
            self.spent += exc.attempts
            exc.attempts = self.spent
            raise
        self.spent += result.attempts
        try:
            answers.check(self.chunk, result, self.sample_ms, span=self.span)
        except ImplausibleAnswerError as exc:
            exc.attempts = self.spent
            raise
        return dataclasses.replace(result, attempts=self.spent)


def billed_frames(chunk: Chunk, media: Media, sample_ms: int,
                  span: Fraction | None = None) -> int:
    """The frames a request for `chunk` makes Clarifai bill: an image batch's images; a video's
    frames sampled (one an interval of the video it receives: `span`, its file's stated
    length, else the chunk's)."""
    if isinstance(media, ImageBatch):
        return len(media.images)
    if chunk.instants is not None:
        return len(chunk.instants)
    return clarifai_grid(span if span is not None else chunk.duration, sample_ms).count


def halved(limits: Limits, chunk: Chunk) -> Limits:
    """Half the chunk's size and length (and no more than the limits), with floors."""
    return Limits(limits.mode, max(100_000, min(limits.max_bytes, chunk.size_bytes) // 2),
                  max(1000, min(limits.max_duration_ms, chunk.end_ms - chunk.start_ms) // 2))
