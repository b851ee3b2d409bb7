"""Helpers for the hostile-input tests: MP4 boxes patched as bytes, and the peak memory of a
real CLI process (its ffprobe and ffmpeg children included)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from batch_support import REPO

STBL = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
MDHD = (b"moov", b"trak", b"mdia", b"mdhd")


def _locate(data: bytes, kind: bytes) -> tuple[int, int]:
    """(offset, size) of the first box of type `kind` among the boxes that make up `data`."""
    pos = 0
    while pos + 8 <= len(data):
        size, box = struct.unpack_from(">I4s", data, pos)
        size = size or len(data) - pos
        if box == kind:
            return pos, size
        pos += size
    raise KeyError(kind)


def body_at(data: bytes, path: tuple[bytes, ...]) -> int:
    """The offset of the body of the first box at `path` (moov, trak, ...: first of each)."""
    start, end = 0, len(data)
    for kind in path:
        pos, size = _locate(data[start:end], kind)
        start, end = start + pos + 8, start + pos + size
    return start


def patch(data: bytes, path: tuple[bytes, ...], at: int, fmt: str, *values: int) -> bytes:
    """`data` with `values` packed (struct `fmt`) at `at` bytes into the body of the box at
    `path`; sizes unchanged."""
    out = bytearray(data)
    struct.pack_into(fmt, out, body_at(data, path) + at, *values)
    return bytes(out)


def replace(data: bytes, path: tuple[bytes, ...], body: bytes) -> bytes:
    """`data` with the box at `path` given a new body, each enclosing box's size fixed (moov
    must be the last top-level box, as ffmpeg writes it, so no sample moves)."""
    if not path:
        return body
    pos, size = _locate(data, path[0])
    inner = replace(data[pos + 8:pos + size], path[1:], body)
    return data[:pos] + struct.pack(">I4s", len(inner) + 8, path[0]) + inner + data[pos + size:]


def top_box_offset(data: bytes, kind: bytes) -> int:
    return _locate(data, kind)[0]


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float  # the largest resident set of the CLI or any child it waited for


# Runs the command given, then prints its exit status, output and the peak resident set of all
# its descendants (RUSAGE_CHILDREN: the CLI and the ffprobe/ffmpeg it waited for).
_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured_cli(*args: str, timeout: float = 240) -> Measured:
    """`python -m pipeline ARGS` in a fresh process whose peak memory is measured."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(timeout), sys.executable, "-m",
                           "pipeline", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout + 30, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return Measured(found["returncode"], found["stdout"], found["stderr"],
                    found["peak_kb"] / 1024)


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
