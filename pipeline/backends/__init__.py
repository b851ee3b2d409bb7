"""Prediction backends: one interface, `predict(chunk, media, sample_ms) -> ChunkResult`.

`local` runs an embedded model in process; `clarifai` speaks Clarifai's gRPC API to
api.clarifai.com or any Clarifai-compatible server. `factory.make_backend` picks one from the
settings; `retry` and `ratelimit` are the clarifai backend's policies."""

from __future__ import annotations

from typing import Protocol

from pipeline.types import Chunk, ChunkResult, Media, ModelInfo


class Backend(Protocol):
    """Answers one chunk at a time; the result says which clock its frame times are on."""

    name: str
    model: ModelInfo

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        """Score `chunk`, whose bytes (or URL) `media` carries."""
        ...

    def close(self) -> None: ...
