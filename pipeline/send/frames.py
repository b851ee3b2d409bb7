"""The frames strategy: the sampled frames as JPEG image inputs, up to 128 a request.

One ffmpeg pass per video (both cores) gives every sampled frame as RGB, which Pillow encodes as
a JPEG (`media.stills`: quality 90, 4:4:4, what an image model decodes faithfully) into one
file beside an index of their sizes (image n is instant n): nothing is written per image, and a
batch's images are read from the file when it is sent. A batch is consecutive
instants, so it starts on a whole interval and its answers go straight onto the source clock.
Any image model takes them: Clarifai's video predict serves only a few public models, its
image predict every image model, a user's own included."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipeline.errors import InputError, SegmentError
from pipeline.media import stills
from pipeline.send import costs, instants, skipping
from pipeline.send.encoded import beside, made, named
from pipeline.send.strategy import Cost, PreparedChunks, Skipper, Strategy, Travel, setting
from pipeline.types import DEFAULT_MAX_BYTES, Chunk, ImageBatch, Limits, Plan, VideoInfo

log = logging.getLogger(__name__)

# Clarifai's image inputs are limited to 20 MB each (ours come to ~20-50 KB).
IMAGE_MAX_BYTES = 20_000_000


@dataclass(frozen=True, kw_only=True)
class Frames(Strategy):
    """The sampled frames as JPEG images, up to 128 a request; any image model takes them."""

    name: ClassVar[str] = "frames"
    summary: ClassVar[str] = "the sampled frames as JPEG images, for any image model"
    travel: ClassVar[Travel] = Travel.BYTES
    cpu_per_hour: ClassVar[float] = 234.0  # decoding every frame, encoding the sampled ones

    image_size: int = setting(320, "--image-size", "frames: the JPEGs' shorter side in "
                              "pixels, never upscaled (default 320)", low=64, high=4096,
                              metavar="PX")
    image_quality: int = setting(stills.QUALITY, "--image-quality", "frames: JPEG quality, "
                                 "50-95, higher is better and larger; 4:4:4 chroma (default "
                                 f"{stills.QUALITY})", low=50, high=95, metavar="Q")
    images_per_request: int = setting(128, "--images-per-request", "frames: images a request, "
                                      "1-128 (default 128, Clarifai's maximum)", low=1,
                                      high=128, metavar="N")
    skip_similar: bool = skipping.similar()
    skip_threshold: float = skipping.threshold()
    max_carry_ms: int = skipping.max_carry()
    audit_share: float = skipping.audit_share()

    def key(self, sample_ms: int) -> tuple[tuple[str, object], ...]:
        return (("name", self.name), ("image_size", self.image_size),
                ("image_quality", self.image_quality),
                ("images_per_request", self.images_per_request), *skipping.key(self))

    def prepare(self, info: VideoInfo, limits: Limits, folder: Path,
                sample_ms: int) -> PreparedChunks:
        return FramesChunks(self, sample_ms, info, limits, folder)

    def cost(self, info: VideoInfo, plan: Plan, limits: Limits, sample_ms: int) -> Cost:
        count = instants.grid(info, sample_ms).count
        total = round(count * costs.jpeg_bytes_per_image(info, self.image_size,
                                                          self.image_quality))
        requests = costs.requests_for(count, self.images_per_request, total, limits.max_bytes)
        return Cost(self.name, requests, total, count,
                    costs.cpu_seconds(info, self.cpu_per_hour, decodes=True), True)


class FramesChunks:
    """One video's sampled frames as JPEGs, and the batches of them that requests carry."""

    def __init__(self, strategy: Frames, sample_ms: int, info: VideoInfo, limits: Limits,
                 folder: Path) -> None:
        self.strategy = strategy
        self.sample_ms = sample_ms
        self.limits = limits
        self.grid = instants.grid(info, sample_ms)
        self.length = instants.span(info)
        self._folder = folder
        rules = skipping.rules(strategy, sample_ms)
        path, self.table = self._extract(info, signatures=rules is not None)
        self.source = str(path)
        self._check_sizes(info)
        self.skipper: Skipper | None = None if rules is None else skipping.Skipping(
            rules, beside(path, skipping.SIGNATURES), self.grid.count, self._carrying)

    def _extract(self, info: VideoInfo, *, signatures: bool) -> tuple[Path, stills.Stills]:
        """The images file, its index (and, when skipping, the signatures), made once (an
        earlier run's are taken as they are: renamed into place only when whole, and named by
        what made them)."""
        video, quality = info.video, self.strategy.image_quality
        if not video.width or not video.height:
            raise InputError(info.path, "its frame size is unknown, so its frames cannot be "
                             "written as images")
        size = stills.display_size(video.width, video.height, video.rotation,
                                   self.strategy.image_size)
        argv = stills.rgb_argv(info.path, self.grid, size)
        key = [*argv, f"jpeg q{quality} 4:4:4", *(["signatures"] if signatures else [])]
        path = named(key, self._folder, "images.jpg")
        index = beside(path, "images.idx")
        others = [index, *([beside(path, skipping.SIGNATURES)] if signatures else [])]

        def make(parts: dict[Path, Path]) -> None:
            written = stills.write(argv, self.grid, size, parts[path], parts[index],
                                   quality=quality, signatures=parts.get(others[-1])
                                   if signatures else None, seconds=info.duration_ms / 1000)
            if written != self.grid.count:
                raise InputError(info.path, f"the frames' JPEGs hold {written} of "
                                 f"{self.grid.count} sampled frames (the video does not "
                                 "decode to its end)")

        made(path, others, make, video=info.path, what="the frames' JPEGs",
             doing=f"writing {self.grid.count} sampled frames as JPEGs ({size[0]}x{size[1]}, "
                   f"quality {quality})")
        found = stills.Stills.read(path, index, self.grid.count)
        if found is None:
            raise InputError(info.path, "the frames' JPEGs are not whole; remove "
                             f"{self._folder} to write them again")
        return path, found

    def _check_sizes(self, info: VideoInfo) -> None:
        largest = int(self.table.sizes.max())
        if largest > min(IMAGE_MAX_BYTES, self.limits.max_bytes):
            raise InputError(info.path, f"a sampled frame's JPEG is {largest:,} bytes, over "
                             "the limit for one input; lower --image-size or --image-quality")

    # -- batches -----------------------------------------------------------------------------
    def chunks(self) -> list[Chunk]:
        # Images travel as bytes in every mode: a request within the bytes limit, too.
        budget = min(self.limits.max_bytes, DEFAULT_MAX_BYTES["bytes"])
        return self._batches(0, self.grid.count, self.strategy.images_per_request, budget)

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        """Two batches or more, each at most half the images (the API refused this one)."""
        if chunk.frames < 2:
            raise SegmentError(f"batch {chunk.index}: one image, refused as too large")
        if chunk.instants is not None:
            return self._picked(chunk.instants, (chunk.frames + 1) // 2, limits.max_bytes, 0)
        assert chunk.packets is not None
        first, end = chunk.packets
        return self._batches(first, end, (end - first + 1) // 2, limits.max_bytes)

    def _carrying(self, chosen: Sequence[int], first_index: int) -> list[Chunk]:
        budget = min(self.limits.max_bytes, DEFAULT_MAX_BYTES["bytes"])
        return self._picked(chosen, self.strategy.images_per_request, budget, first_index)

    def _picked(self, chosen: Sequence[int], per_request: int, max_bytes: int,
                first_index: int) -> list[Chunk]:
        """Batches of the instants `chosen` (--skip-similar), in order, each at most
        `per_request` images and `max_bytes`; image n of a batch is its instants[n]."""
        sizes = self.table.sizes
        out: list[Chunk] = []
        a = 0
        while a < len(chosen):
            b, total = a, 0
            while b < len(chosen) and b - a < per_request and (
                    b == a or total + int(sizes[chosen[b]]) <= max_bytes):
                total += int(sizes[chosen[b]])
                b += 1
            start, stop = instants.bounds(chosen[a], chosen[b - 1] + 1, self.sample_ms,
                                          self.length)
            out.append(Chunk(first_index + len(out), self.source, start, stop, total, b - a,
                             instants=tuple(chosen[a:b])))
            a = b
        return out

    def _batches(self, first: int, end: int, per_request: int, max_bytes: int) -> list[Chunk]:
        """Consecutive instants, each batch at most `per_request` images and `max_bytes`."""
        sizes = self.table.sizes
        out: list[Chunk] = []
        a = first
        while a < end:
            b, total = a, 0
            # One image at least, whatever its size (each was checked against the limit).
            while b < end and b - a < per_request and (
                    b == a or total + int(sizes[b]) <= max_bytes):
                total += int(sizes[b])
                b += 1
            start, stop = instants.bounds(a, b, self.sample_ms, self.length)
            out.append(Chunk(len(out), self.source, start, stop, total, b - a, packets=(a, b)))
            a = b
        return out

    # -- requests ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def open(self, chunk: Chunk) -> Iterator[ImageBatch]:
        yield ImageBatch(self.images(chunk))

    def images(self, chunk: Chunk) -> tuple[bytes, ...]:
        """The batch's JPEGs, read from the images file."""
        which: Sequence[int]
        if chunk.instants is not None:
            which = chunk.instants
        else:
            assert chunk.packets is not None
            which = range(*chunk.packets)
        fd = os.open(chunk.path, os.O_RDONLY)
        try:
            return tuple(os.pread(fd, int(self.table.sizes[i]), int(self.table.offsets[i]))
                         for i in which)
        finally:
            os.close(fd)
