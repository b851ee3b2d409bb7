"""The frames strategy's JPEGs: one ffmpeg pass writes the frame at each instant as RGB at the
images' size, and Pillow encodes each (quality 90, 4:4:4), all into one file of JPEGs end to
end beside an index of their sizes; a video that skips gets each frame's signature from the
same RGB frame (no second decode).

Why Pillow, from RGB: an image model reads a JPEG as BT.601 full-range YCbCr, which is how
Pillow writes it from RGB; ffmpeg's mjpeg encoder writes the source's own YUV, BT.709 for HD
video, at 4:2:0. Measured on ten minutes of film against the local backend's full-resolution
frames (docs/benchmarks.md): ffmpeg -q:v 4 4:2:0 agreed on 96.8% of labels (mean absolute
difference 0.030); Pillow q90 4:4:4 on 98.8% (0.017) at ~2x the bytes. Lossless PNG at the
same size reached 99.0% (0.017): what is left is the model's own sensitivity, not the size.
libjpeg is deterministic: the same frames give the same bytes."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import skip
from pipeline.media import proc, sampler
from pipeline.sampling import Grid

QUALITY = 90  # Pillow's JPEG quality (its default is 75)


@dataclass(frozen=True, eq=False)
class Stills:
    """Where each instant's JPEG lies in the images file."""

    sizes: np.ndarray  # int64
    offsets: np.ndarray  # int64

    @classmethod
    def read(cls, path: Path, index: Path, count: int) -> Stills | None:
        """The index of `path`, if it is whole: `count` sizes that add up to the file."""
        try:
            sizes = np.fromfile(index, dtype="<i8")
            length = path.stat().st_size
        except (OSError, ValueError):
            return None
        if len(sizes) != count or int(sizes.sum()) != length:
            return None
        return cls(sizes.astype(np.int64), np.concatenate(([0], np.cumsum(sizes)[:-1])))


def display_size(width: int, height: int, rotation: int, side: int) -> tuple[int, int]:
    """The images' size: the displayed frame (rotation applied, as ffmpeg does) scaled so its
    shorter side is `side` (never up), both sides even, aspect kept."""
    if rotation % 180 == 90:
        width, height = height, width
    short, long = min(width, height), max(width, height)
    s = 2 * (min(side, short) // 2)
    t = max(2, 2 * round(long * s / short / 2))
    return (t, s) if width >= height else (s, t)


def rgb_argv(src: str, grid: Grid, size: tuple[int, int]) -> list[str]:
    """One pass: the frame at each instant, scaled to `size` (bicubic), as raw RGB on stdout."""
    width, height = size
    return [proc.FFMPEG, "-v", "error", "-nostdin", "-threads", sampler.THREADS,
            *proc.input_args(src), "-map", "0:v:0", "-an", "-sn", "-dn",
            "-vf", f"{sampler.select_vf(grid)},scale={width}:{height}:flags=bicubic,"
                   "format=rgb24",
            "-frames:v", str(grid.count), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def write(argv: list[str], grid: Grid, size: tuple[int, int], out: Path, index: Path, *,
          quality: int, signatures: Path | None, seconds: float) -> int:
    """Run `argv` (rgb_argv) and write each frame it gives as a JPEG into `out`, their sizes
    into `index`, and, if asked, each frame's signature into `signatures`; the frames
    written (the caller checks there is one an instant)."""
    width, height = size
    frame_bytes = width * height * 3
    rules = proc.deadlines()
    stream = proc.Streamed(argv, timeout=rules.deadline(media_seconds=seconds),
                           stall=rules.stall(step_seconds=float(grid.step)))
    sizes: list[int] = []
    try:
        with open(out, "wb") as images, _optional(signatures) as thumbs:
            while len(raw := stream.read(frame_bytes)) == frame_bytes:
                rgb = Image.frombuffer("RGB", (width, height), raw)
                sizes.append(images.write(encode(rgb, quality)))
                if thumbs is not None:
                    thumbs.write(signature(rgb))
        stream.finish()
    except BaseException:
        stream.kill()
        raise
    np.asarray(sizes, dtype="<i8").tofile(index)
    return len(sizes)


def encode(rgb: Image.Image, quality: int) -> bytes:
    with io.BytesIO() as buf:
        rgb.save(buf, format="JPEG", quality=quality, subsampling=0)
        return buf.getvalue()


def signature(rgb: Image.Image) -> bytes:
    """The frame's signature (pipeline.skip): its luma, area-averaged to 64x64."""
    gray = rgb.convert("L").resize((skip.SIDE, skip.SIDE), Image.Resampling.BOX)
    return gray.tobytes()


class _optional:
    """A file written if a path is given, else nothing."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fh: io.BufferedWriter | None = None

    def __enter__(self) -> io.BufferedWriter | None:
        if self._path is not None:
            self._fh = open(self._path, "wb")  # noqa: SIM115 (closed in __exit__)
        return self._fh

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


def remove(*paths: Path) -> None:
    for path in paths:
        if os.path.exists(path):
            os.unlink(path)
