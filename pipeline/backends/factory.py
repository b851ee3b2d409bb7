"""The backend the settings name; never switched silently."""

from __future__ import annotations

import threading

from pipeline.backends import Backend
from pipeline.settings import Settings


def make_backend(settings: Settings, *, interrupt: threading.Event | None = None) -> Backend:
    """`interrupt`, when set, makes the backend drop its requests in flight and end its waits
    (the run is stopping)."""
    # Each backend's module brings its own heavy imports (gRPC and Clarifai's client; Pillow
    # and the model's runtime): only the one asked for is imported.
    api = settings.api
    if api.backend == "local":
        from pipeline.backends.local import LocalBackend
        return LocalBackend(api.model, decode_threads=1 if api.workers > 1 else 0,
                            exact_frames=settings.strategy.exact_decode)
    from pipeline.backends.clarifai import ClarifaiBackend
    return ClarifaiBackend.from_settings(api, interrupt=interrupt)
