"""Prediction backends: one interface, `predict(chunk, media, sample_ms) -> ChunkResult`.

`local` runs an embedded model in process; `clarifai` speaks Clarifai's gRPC API to
api.clarifai.com or any Clarifai-compatible server. `factory.make_backend` picks one from the
settings; `retry` and `ratelimit` are the clarifai backend's policies. The interface itself,
`Backend`, is declared where it is used, in `pipeline.predict`."""

from __future__ import annotations

from pipeline.predict import Backend

__all__ = ["Backend"]
