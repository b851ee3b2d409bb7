"""Test media made with ffmpeg's lavfi sources (nothing large is committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def ffprobe_count(path: str | Path) -> int:
    """Video frames in a file, counted by ffprobe reading every packet."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
         "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True).stdout
    return int(_first_value(out))


def ffprobe_duration(path: str | Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=duration", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True).stdout
    return float(_first_value(out))


def _first_value(csv_out: str) -> str:
    """ffprobe's csv can add empty side-data lines and trailing commas; take the first value."""
    return next(line for line in csv_out.splitlines() if line.strip()).split(",")[0]


def testsrc(out: Path, *, seconds: float = 20, size: str = "320x240", rate: int = 30,
            gop: int = 30, extra_vf: str = "", codec: list[str] | None = None,
            audio: bool = False, out_args: list[str] | None = None) -> Path:
    vf = f"testsrc2=size={size}:rate={rate}" + (f",{extra_vf}" if extra_vf else "")
    args = ["-f", "lavfi", "-i", vf]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += ["-t", str(seconds)]
    args += codec or ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(gop),
                      "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-shortest"]
    ffmpeg(*args, *(out_args or []), str(out))
    return out
