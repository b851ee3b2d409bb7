"""Helpers shared by the batch, crash and Dask tests: small multi-chunk videos, running the CLI as
a subprocess, reading an output folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from media import testsrc

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = "200000"  # ~4 s of the videos below: every video becomes several chunks


def make_video(path: Path, *, seconds: float = 12, hue: int = 0) -> Path:
    """320x240 noisy test pattern at ~300 kb/s with 1 s GOPs; `hue` makes distinct content."""
    return testsrc(path, seconds=seconds, rate=25, extra_vf=f"noise=alls=20:allf=t,hue=h={hue}",
                   codec=["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", "-g", "25",
                          "-pix_fmt", "yuv420p"])


def copy_folder(src: Path, dst: Path) -> Path:
    """A copy that keeps mtimes (ids are content-only; mtimes keep the comparison simple)."""
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    """`python -m pipeline ARGS` as a child process (stdout and stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, **kw)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, **(env or {})},
                          timeout=timeout)


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def by_source(out: Path) -> dict[str, dict[str, Any]]:
    return {Path(e["source"]).name: e for e in summary(out)["inputs"]}


def checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("*/results/chunk-*.json"))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def result_files(out: Path) -> dict[str, bytes]:
    """Every file a run leaves for a video (timeline, frames, chunk list, checkpoints), by path
    relative to --out, with --out itself written as OUT (chunks.json names chunk files)."""
    files: dict[str, bytes] = {}
    for path in sorted(out.glob("*/**/*")):
        if path.is_file() and not path.relative_to(out).parts[0].startswith("."):
            files[str(path.relative_to(out))] = path.read_bytes().replace(
                str(out).encode(), b"OUT")
    return files


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
