"""Shared helpers for the benchmarks: generated media (cached in bench/out) and timing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
T = TypeVar("T")


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def settle() -> None:
    """Flush dirty pages so that neither side of a comparison pays for the other's writes."""
    os.sync()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def five_minute_720p() -> Path:
    """5 min of 720p30 H.264 at ~3 Mbit/s with AAC audio, like the measured real footage
    (docs/chunking.md: 3.2 Mbit/s, a keyframe every ~1.8 s): its detail, and
    so its bit rate, swings every 20 s; keyframes at most 2 s apart, plus x264's scene cuts."""
    OUT.mkdir(exist_ok=True)
    path = OUT / "five-720p-g60.mp4"
    if not path.exists():
        vf = ("testsrc2=size=1280x720:rate=30,"
              "noise=alls=14:allf=t:enable='lt(mod(t,40),20)',hue=H=t/9")
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", vf,
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "300",
           "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3000k",
           "-maxrate", "6000k",
           "-bufsize", "6000k", "-c:a", "aac", "-b:a", "128k", "-shortest", str(path))
    return path


def thirty_minute_720p() -> Path:
    """The 5-minute video joined six times with the concat demuxer (stream copy): ~700 MB."""
    path = OUT / "thirty-720p-g60.mp4"
    if not path.exists():
        five = five_minute_720p()
        listing = OUT / "concat.txt"
        listing.write_text("".join(f"file '{five.name}'\n" for _ in range(6)))
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i",
           str(listing), "-c", "copy", str(path))
    return path


def start_serve(*args: str) -> tuple[subprocess.Popen[str], int]:
    """`video-pipeline serve` on a free loopback port, in a process of its own (its CPU is not
    the client's), with `args`; returns the process and the port once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--port", "0", *args],
                            cwd=REPO, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "VIDEO_PIPELINE_API_KEY": ""})
    assert proc.stderr is not None
    line = ""
    while "serving on" not in line:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("serve exited before listening")
    return proc, int(line.strip().rsplit(":", 1)[1])
