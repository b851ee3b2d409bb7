"""Decode one frame per sampling interval, scaled for the model, straight into arrays."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import numpy as np

from pipeline.media import proc, sampler
from pipeline.sampling import Grid

SIZE = 224
_FRAME_BYTES = SIZE * SIZE * 3


# Decoding is the local model's bottleneck (~14x real time for 720p30 on 2 cores). Skipping the
# decode of non-reference frames and the deblocking filter roughly doubles that; a sample then
# shows the nearest earlier reference frame (a few frames, <= ~0.1 s, before the instant).
FAST_DECODE = ["-skip_frame", "noref", "-skip_loop_filter", "all"]


def decode_argv(path: str | None, grid: Grid, *, threads: int = 0,
                fast: bool = False) -> list[str]:
    """The ffmpeg command that writes one raw RGB frame per instant of `grid` to stdout.

    `path` None reads the video from stdin. The frames are the sampler's (one per instant, the
    last frame held past the end), resized and centre-cropped as open_nsfw expects (256 -> 224)."""
    vf = f"{sampler.select_vf(grid)},scale=256:256:flags=bilinear,crop={SIZE}:{SIZE}"
    return [proc.FFMPEG, "-v", "error", "-nostdin", "-threads", str(threads),
            *(FAST_DECODE if fast else []),
            "-i", proc.PIPE_INPUT if path is None else proc.media_input(path),
            "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-frames:v", str(grid.count),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def decode(path: str | None, grid: Grid, *, threads: int = 0, fast: bool = False,
           data: bytes | None = None) -> Iterator[np.ndarray]:
    """Yield `grid.count` RGB uint8 frames of SIZE x SIZE: the frame shown at each instant, from
    the file or URL `path`, or from `data` (a video in memory, fed to ffmpeg's stdin).

    A reader thread keeps ffmpeg decoding while the caller runs inference."""
    if grid.count == 0:
        return
    argv = decode_argv(None if data is not None else path, grid, threads=threads, fast=fast)
    stream = proc.Streamed(argv, stdin=data)
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    reader = threading.Thread(target=_read_frames, args=(stream, frames), daemon=True)
    reader.start()
    try:
        while (raw := frames.get()) is not None:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(SIZE, SIZE, 3)
        reader.join()
        stream.finish()
    except BaseException:
        stream.kill()
        _drain(frames, reader)
        raise


def _drain(frames: queue.Queue[bytes | None], reader: threading.Thread) -> None:
    """Let the reader end when the caller stops early: it may wait to put a frame into a full
    queue that nobody reads any more (a thread and 64 frames left behind each time)."""
    while reader.is_alive():
        with contextlib.suppress(queue.Empty):
            frames.get(timeout=0.1)


def _read_frames(stream: proc.Streamed, out: queue.Queue[bytes | None]) -> None:
    try:
        while len(raw := stream.stdout.read(_FRAME_BYTES)) == _FRAME_BYTES:
            out.put(raw)
    finally:
        out.put(None)
