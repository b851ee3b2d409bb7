"""Prediction backends: one interface, `predict(chunk, sample_ms) -> ChunkResult`."""

from __future__ import annotations

from typing import Protocol

from pipeline.types import Chunk, ChunkResult, ModelInfo


class Backend(Protocol):
    """Answers one chunk at a time, with chunk-local frame times (ms from its first frame)."""

    name: str
    model: ModelInfo

    def predict(self, chunk: Chunk, sample_ms: int) -> ChunkResult: ...

    def close(self) -> None: ...
