"""Strategies: what the requests for one video carry (`--strategy`).

- `copy` (the default): the source's own chunks, stream-copied at keyframes (`segment.split`).
- `compact`: a proxy video holding only the sampled frames, each shown for its whole interval,
  cut at multiples of sample_ms (`send.compact`): ten minutes a request, a few MB.
- `frames`: the sampled frames as JPEG image inputs, up to 128 a request (`send.frames`); any
  image model takes them.

Here: a strategy and its settings (`Strategy`) and what each strategy gives for a video
(`Sending`: its chunks, how one is opened for a request, how one the API refused as too large is
cut again smaller). `send.prepare` makes a video's `Sending`."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.media import sampler
from pipeline.types import Chunk, Limits, Media

STRATEGIES = ("copy", "compact", "frames")


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """A strategy and its settings (measured defaults: `media.sampler`)."""

    name: str = "copy"
    sample_ms: int = 1000
    proxy_size: int = 320  # compact: the proxy's short side, px (never upscaled)
    proxy_crf: int | None = None  # compact: x264 CRF; None: by sample_ms (sampler.proxy_crf)
    image_size: int = 320  # frames: the JPEGs' short side, px (never upscaled)
    image_quality: int = 4  # frames: ffmpeg's mjpeg -q:v, 2 (best) to 31
    images_per_request: int = 128  # frames: Clarifai's documented maximum

    @classmethod
    def of(cls, settings: Any) -> Strategy:
        """The strategy a Settings names."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(settings, "strategy" if n == "name" else n) for n in names})

    @property
    def crf(self) -> int:
        return self.proxy_crf if self.proxy_crf is not None else sampler.proxy_crf(self.sample_ms)

    def key(self) -> tuple[tuple[str, object], ...]:
        """What a video's results depend on besides the rest of the run key: a change redoes
        it. Empty for copy, so runs made before strategies existed stay done."""
        if self.name == "compact":
            return (("name", "compact"), ("proxy_size", self.proxy_size), ("crf", self.crf))
        if self.name == "frames":
            return (("name", "frames"), ("image_size", self.image_size),
                    ("image_quality", self.image_quality),
                    ("images_per_request", self.images_per_request))
        return ()


class Sending(Protocol):
    """One video's chunks under a strategy, and what a request carries for each."""

    source: str  # the file the in-memory chunks are cut from (the source, the proxy, ...)

    def chunks(self) -> list[Chunk]:
        """The video's chunks, each verified against the limits."""
        ...

    def open(self, chunk: Chunk) -> contextlib.AbstractContextManager[Media]:
        """The chunk's media for one request."""
        ...

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        """`chunk` cut again under `limits` (the API said it was too large); times kept."""
        ...
