"""Batch benchmark: a folder of 20 short videos, on threads and on a 2-worker Dask LocalCluster,
then a rerun of each (the bar: under 10% of the first run's time, and zero requests).

    .venv/bin/python bench/bench_batch.py [--videos 20] [--seconds 8] [--work bench/out/batch]

Each run is the real command line (`python -m pipeline run`) in a child process, timed from the
outside, so Python's start-up and the model load count against every figure, reruns included.
Requests are the sum of summary.json's per-input request counts."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = "200000"


def make_videos(folder: Path, count: int, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"clip-{i:02d}.mp4"
        if path.exists():
            continue
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=320x240:rate=25,noise=alls=20:allf=t,hue=h={i * 17}",
                        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                        "-b:v", "300k", "-g", "25", "-pix_fmt", "yuv420p", str(path)],
                       check=True)


def timed_run(videos: Path, out: Path, *extra: str) -> tuple[float, dict[str, object]]:
    argv = [sys.executable, "-m", "pipeline", "run", str(videos), "--out", str(out),
            "--max-bytes", MAX_BYTES, "--no-progress", *extra]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr}")
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return seconds, summary


def bench(label: str, videos: Path, out: Path, *extra: str) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    first, s1 = timed_run(videos, out, *extra)
    rerun, s2 = timed_run(videos, out, *extra)
    row = {"first_s": first, "rerun_s": rerun, "rerun_fraction": rerun / first,
           "first_requests": float(str(s1["requests"])),
           "rerun_requests": float(str(s2["requests"]))}
    print(f"{label:<22} first {first:7.2f} s  ({row['first_requests']:.0f} requests)   "
          f"rerun {rerun:5.2f} s = {100 * rerun / first:4.1f}% "
          f"({row['rerun_requests']:.0f} requests)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--work", default=str(REPO / "bench" / "out" / "batch"))
    args = parser.parse_args()
    work = Path(args.work)
    videos = work / "videos"
    make_videos(videos, args.videos, args.seconds)
    print(f"{args.videos} videos of {args.seconds:g} s, 320x240, cut at {MAX_BYTES} bytes")
    rows = {
        "threads": bench("threads (default)", videos, work / "out-threads"),
        "dask local:2": bench("dask LocalCluster x2", videos, work / "out-dask",
                              "--dask", "local:2"),
    }
    same = all(
        (work / "out-threads" / p.relative_to(work / "out-dask")).read_bytes() == p.read_bytes()
        for p in (work / "out-dask").glob("*/timeline.json"))
    print(f"dask timelines identical to threads': {same}")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
