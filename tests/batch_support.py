"""Helpers shared by the batch, crash and Dask tests: small multi-chunk videos, running the CLI as
a subprocess, reading an output folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, text=True,
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


def kill_after_saving(victim: subprocess.Popen[str], out: Path,
                      results: int) -> tuple[set[int], dict[int, int]]:
    """SIGKILL a run once it has saved `results` chunk results; then the chunks saved (by
    index) and every chunk's size (sizes tell the chunks apart in serve's request log)."""
    try:
        wait_for(lambda: len(checkpoints(out)) >= results, 60, f"{results} saved results")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
        victim.communicate()
    saved = {int(p.stem.split("-")[1]) for p in checkpoints(out)}
    chunks = json.loads(next(out.glob("*/chunks.json")).read_text())["chunks"]
    sizes = {c["index"]: c["size_bytes"] for c in chunks}
    assert len(set(sizes.values())) == len(sizes), "chunk sizes must tell chunks apart"
    assert len(saved) < len(chunks), "killed too late to prove anything"
    return saved, sizes


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


def start_serve(*args: str) -> tuple[subprocess.Popen[str], int]:
    """`video-pipeline serve --port 0 ARGS` as a child process; returns it and its port."""
    proc = cli("serve", "--port", "0", *args)
    assert proc.stderr is not None
    line = ""
    deadline = time.monotonic() + 30
    while "serving on" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "serve exited before listening"
    found = re.search(r"serving on [\d.]+:(\d+)", line)
    assert found, f"serve did not report its port: {line!r}"
    return proc, int(found.group(1))


@contextlib.contextmanager
def small_disk(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real file system of `size` (a tmpfs, mounted by root as CI runs) at `path`: writes past
    its size fail with ENOSPC, as on a full disk."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"these tests mount a tmpfs (run as root): {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` until it has no space left; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    return filler
