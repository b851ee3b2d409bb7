"""The backend the settings name; never switched silently."""

from __future__ import annotations

from pipeline.backends import Backend
from pipeline.settings import Settings


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from pipeline.backends.local import LocalBackend
        return LocalBackend(settings.model, decode_threads=1 if settings.workers > 1 else 0,
                            exact_frames=settings.strategy == "compact")
    from pipeline.backends.clarifai import ClarifaiBackend
    return ClarifaiBackend.from_settings(settings)
