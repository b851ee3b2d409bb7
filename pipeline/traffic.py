"""What one video's requests cost on the wire: requests sent again after a failed attempt
(retries), attempts the API answered "slow down" (throttles), and the media bytes the requests
carried. Counted per video, so that they travel back with its Outcome (from a Dask worker too)
and sum into summary.json and the metrics file.

`Metered` wraps the run's backend for one video. A retry policy runs inside the backend's
`predict`, on the calling thread, so a throttled attempt is noted (`throttled()`) in the tally
of the video whose chunk that thread is predicting: no backend needs to know about videos."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from pipeline.errors import BackendError
from pipeline.predict import Backend
from pipeline.types import Chunk, ChunkResult, ImageBatch, Media, ModelInfo, VideoBytes, VideoFile

_current = threading.local()


@dataclass(frozen=True)
class Counts:
    """A video's traffic, as summary.json gives it."""

    retries: int = 0
    throttles: int = 0
    bytes_sent: int = 0


class Traffic:
    """One video's running counts; chunks of the video are predicted on several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retries = self._throttles = self._bytes = 0

    def add(self, *, retries: int = 0, throttles: int = 0, bytes_sent: int = 0) -> None:
        with self._lock:
            self._retries += retries
            self._throttles += throttles
            self._bytes += bytes_sent

    def counts(self) -> Counts:
        with self._lock:
            return Counts(self._retries, self._throttles, self._bytes)


def throttled() -> None:
    """The API answered this thread's attempt with a throttle (the backend says so)."""
    tally: Traffic | None = getattr(_current, "tally", None)
    if tally is not None:
        tally.add(throttles=1)


def media_bytes(media: Media) -> int:
    """The bytes a request carries for `media` (a URL's: none, the API fetches them)."""
    if isinstance(media, VideoBytes):
        return len(media.data)
    if isinstance(media, VideoFile):
        try:
            return os.path.getsize(media.path)
        except OSError:
            return 0
    if isinstance(media, ImageBatch):
        return sum(len(image) for image in media.images)
    return 0


class Metered:
    """`backend`, counting one video's retries, throttles and bytes sent into `tally`; with
    `sends` False (a model in this process) no byte leaves, so none is counted."""

    def __init__(self, backend: Backend, tally: Traffic, *, sends: bool) -> None:
        self._backend = backend
        self._tally = tally
        self._sends = sends
        self.name = backend.name
        self.model: ModelInfo = backend.model

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        outer = getattr(_current, "tally", None)
        _current.tally = self._tally
        attempts = 0
        try:
            result = self._backend.predict(chunk, media, sample_ms)
            attempts = result.attempts
            return result
        except BackendError as exc:
            attempts = exc.attempts
            raise
        finally:
            _current.tally = outer
            self._tally.add(retries=max(0, attempts - 1),
                            bytes_sent=attempts * media_bytes(media) if self._sends else 0)

    def close(self) -> None:
        """The run's backend is the run's to close, not one video's."""
