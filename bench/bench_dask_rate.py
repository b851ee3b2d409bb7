"""Rate limit across a Dask cluster: the peak number of requests that reach `serve` in any
1-second window, for a run at `--rate-limit 10` on a 3-worker LocalCluster (Clarifai's account
limit is 15/s; three workers each holding a third of a fractional 10/s could peak near 18).

    .venv/bin/python bench/bench_dask_rate.py [--rate 10] [--workers 3] [--videos 6]

Each video is cut into many small chunks (`--max-bytes 100000`) and sent with `--concurrency 8`,
so every worker always has requests waiting for its share. The arrival times come from serve's
own request log (one JSON line a request, stamped when it arrives)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, start_serve  # noqa: E402


def make_videos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"clip-{i:02d}.mp4"
        if not path.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size=320x240:rate=25,noise=alls=20:allf=t,hue=h={i * 40}",
                            "-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k",
                            "-g", "25", "-pix_fmt", "yuv420p", str(path)], check=True)


def peak(arrivals: list[float]) -> int:
    """The most arrivals in any window [t, t + 1 s), t ranging over the arrivals."""
    return max(sum(1 for u in arrivals if t <= u < t + 1) for t in arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="10")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--videos", type=int, default=6)
    args = parser.parse_args()
    work = OUT / "dask-rate"
    videos = work / "videos"
    make_videos(videos, args.videos)
    out, log = work / "out", work / "requests.jsonl"
    shutil.rmtree(out, ignore_errors=True)
    log.unlink(missing_ok=True)
    server, port = start_serve("--request-log", str(log), "--workers", "16")
    try:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(videos), "--out", str(out),
             "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
             "--max-bytes", "100000", "--concurrency", "8", "--rate-limit", args.rate,
             "--dask", f"local:{args.workers}", "--no-progress"],
            cwd=REPO, capture_output=True, text=True, env={**os.environ,
                                                           "CLARIFAI_PAT": "bench"})
        wall = time.monotonic() - began
    finally:
        server.terminate()
        server.wait()
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr}")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    arrivals = sorted(e["time"] for e in entries if e["method"] == "PostModelOutputs")
    span = arrivals[-1] - arrivals[0]
    result = {"rate_limit": float(args.rate), "workers": args.workers,
              "requests": len(arrivals), "peak_per_1s_window": peak(arrivals),
              "mean_per_second": round(len(arrivals) / span, 2) if span else None,
              "wall_s": round(wall, 2)}
    print(json.dumps(result))
    (OUT / "dask-rate.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
