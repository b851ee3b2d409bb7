"""How one video's chunks travel (its transport): their bytes (bytes mode), staged objects' URLs
(URL mode), or the source's own URL (a URL source that fits the limits as it is).

A transport's `session()` gives the function `predict_chunk` opens a chunk's media with (and
the pieces it may be re-split into); whatever the session staged is removed when it closes,
which the video's run does once the chunk's result is saved (or the chunk has failed).
`sweep()` removes everything staged for the video, left by a run that crashed or a delete that
failed."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from pipeline.predict import MediaOf
from pipeline.send.stage import Stager
from pipeline.types import Chunk, Media, S3Name, VideoBytes, VideoFile, VideoUrl

log = logging.getLogger(__name__)

# Seconds the n-th URL made for a chunk must stay valid (n = 0 for the first): long enough
# for the request's deadline plus every retry the policy allows.
Lifetime = Callable[[Chunk, int], float]


class HasMedia(Protocol):
    """What opens a chunk's media for one request (send.media.ChunkMedia, a strategy's
    prepared chunks)."""

    def open(self, chunk: Chunk) -> contextlib.AbstractContextManager[Media]: ...


class Transport(Protocol):
    """How one video's chunks reach the API."""

    def session(self) -> contextlib.AbstractContextManager[MediaOf]:
        """What opens a chunk's media for its requests; what it staged goes when it closes."""
        ...

    def sweep(self) -> None:
        """Remove everything staged for the video (a crashed run's, a failed delete's)."""
        ...


class BytesTransport:
    """Every request carries the chunk's own bytes."""

    def __init__(self, media: HasMedia) -> None:
        self._media = media

    @contextlib.contextmanager
    def session(self) -> Iterator[MediaOf]:
        yield self._media.open

    def sweep(self) -> None:
        pass


class StagingTransport:
    """Every request carries a presigned URL of the chunk, uploaded under `folder`."""

    def __init__(self, media: HasMedia, stager: Stager, folder: S3Name, lifetime: Lifetime,
                 *, keep: bool = False) -> None:
        self._media = media
        self._stager = stager
        self.folder = folder
        self._lifetime = lifetime
        self._keep = keep

    @contextlib.contextmanager
    def session(self) -> Iterator[MediaOf]:
        staged: list[S3Name] = []
        try:
            yield functools.partial(self._open, staged=staged)
        finally:
            if not self._keep:
                for name in staged:
                    self._stager.delete(name)

    @contextlib.contextmanager
    def _open(self, chunk: Chunk, *, staged: list[S3Name]) -> Iterator[VideoUrl]:
        name = self.folder.child(f"chunk-{chunk.start_ms:09d}-{chunk.end_ms:09d}.mp4")
        made = itertools.count()

        def stage() -> str:
            if name not in staged:
                staged.append(name)  # before the upload: a half-done one is removed too
            # A built chunk's bytes are held for the upload only, not while the API works.
            with self._media.open(chunk) as local:
                if not isinstance(local, VideoFile | VideoBytes):  # sends_urls rules them out
                    raise TypeError(f"only videos made here are staged, not {local!r}")
                self._stager.put(name, local)
            return self._stager.presign(name, self._lifetime(chunk, next(made)))

        yield VideoUrl(stage(), str(name), refresh=stage)

    def sweep(self) -> None:
        if self._keep:
            return
        removed = self._stager.clear(self.folder)
        if removed:
            log.info("removed %d staged chunk(s) left under %s", removed, self.folder)


class ReferenceTransport:
    """The source is sent as it is, by reference: every request carries `url(seconds)` (a fresh
    presigned URL of an object in storage, valid that long, or the http(s) URL as given)."""

    def __init__(self, url: Callable[[float], str], lifetime: Lifetime, label: str) -> None:
        self._url = url
        self._lifetime = lifetime
        self._label = label

    @contextlib.contextmanager
    def session(self) -> Iterator[MediaOf]:
        yield self._open

    @contextlib.contextmanager
    def _open(self, chunk: Chunk) -> Iterator[VideoUrl]:
        made = itertools.count()

        def url() -> str:
            return self._url(self._lifetime(chunk, next(made)))

        yield VideoUrl(url(), self._label, refresh=url)

    def sweep(self) -> None:
        pass
