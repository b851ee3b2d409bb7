"""Decode one frame per sampling interval, scaled for the model, straight into arrays."""

from __future__ import annotations

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
            *proc.input_args(proc.PIPE_INPUT if path is None else path),
            "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-frames:v", str(grid.count),
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def decode(path: str | None, grid: Grid, *, threads: int = 0, fast: bool = False,
           data: bytes | None = None) -> Iterator[np.ndarray]:
    """Yield `grid.count` RGB uint8 frames of SIZE x SIZE: the frame shown at each instant, from
    the file or URL `path`, or from `data` (a video in memory, fed to ffmpeg's stdin).

    A reader thread keeps ffmpeg decoding while the caller runs inference. ffmpeg runs under
    the deadlines in force (proc): the grid's span of media in all, and its output may stand
    still for the stall timeout plus one sampling interval's decoding."""
    if grid.count == 0:
        return
    argv = decode_argv(None if data is not None else path, grid, threads=threads, fast=fast)
    rules = proc.deadlines()
    step = float(grid.step)
    stream = proc.Streamed(argv, stdin=data, stall=rules.stall(step_seconds=step),
                           timeout=rules.deadline(media_seconds=float(grid.first) + step
                                                  * grid.count, size_bytes=len(data or b"")))
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    gone = threading.Event()  # the caller stopped reading: the reader must not wait to put
    reader = threading.Thread(target=_read_frames, args=(stream, frames, gone), daemon=True)
    reader.start()
    try:
        while (raw := frames.get()) is not None:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(SIZE, SIZE, 3)
        reader.join()
        stream.finish()
    except BaseException:
        gone.set()
        stream.kill()
        raise


def _read_frames(stream: proc.Streamed, out: queue.Queue[bytes | None],
                 gone: threading.Event) -> None:
    while len(raw := stream.read(_FRAME_BYTES)) == _FRAME_BYTES and _put(out, raw, gone):
        pass
    _put(out, None, gone)


def _put(out: queue.Queue[bytes | None], item: bytes | None, gone: threading.Event) -> bool:
    """Queue `item` unless the caller is gone (then nothing will ever take it); whether it was."""
    while not gone.is_set():
        try:
            out.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False
