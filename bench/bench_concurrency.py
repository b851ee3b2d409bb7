"""Concurrency of the clarifai backend against `serve --latency-ms 1500`.

A generated video is cut into N chunks (one per 2 s keyframe interval). For each concurrency
C, a fresh backend predicts every chunk through a pool of C threads (as the runner does), and
the wall time is set against the ideal ceil(N / C) x latency. The bar: C=8 at least 3x faster
than C=1 and within 1.3x of the ideal; requests per second (from the server's request log, any
1 s window) never above --rate-limit.

The first request of a backend goes alone, to prove the key before chunks pile up behind a bad
one; each backend is warmed up with one request before the clock starts, so the table shows the
steady state (a real run pays that one extra latency once per run, not per video).

    .venv/bin/python bench/bench_concurrency.py [--chunks 8] [--latency-ms 1500] [--rate-limit 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import segment  # noqa: E402
from pipeline.backends.clarifai import ClarifaiBackend  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.serve.server import ServeConfig, Server  # noqa: E402
from pipeline.types import Chunk, Limits, VideoFile  # noqa: E402

KEY = "bench-key"
GOP_SECONDS = 2


def make_video(path: Path, chunks: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=10", "-t", str(chunks * GOP_SECONDS - 0.5),
                    "-c:v", "libx264", "-preset", "veryfast", "-g", str(10 * GOP_SECONDS),
                    "-pix_fmt", "yuv420p", str(path)], check=True)


def split(video: Path, out: Path) -> list[Chunk]:
    limits = Limits("bytes", 10_000_000, GOP_SECONDS * 1000)
    return segment.split(probe(str(video)), limits, str(out))


def predict_all(server: Server, chunks: list[Chunk], concurrency: int, rate: float,
                sample_ms: int) -> float:
    backend = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{server.port}",
                              insecure=True, rate_limit=rate)
    # warm-up: proves the key (see the module doc)
    backend.predict(chunks[0], VideoFile(chunks[0].path), sample_ms)
    time.sleep(1.1)  # so the warm-up does not count in the rate limiter's window
    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda c: backend.predict(c, VideoFile(c.path), sample_ms),
                                chunks))
    wall = time.monotonic() - began
    backend.close()
    assert all(r.attempts == 1 for r in results)
    return wall


def max_per_second(log: Path) -> int:
    arrivals = sorted(json.loads(line)["time"] for line in log.read_text().splitlines())
    return max(sum(1 for u in arrivals if t <= u < t + 1) for t in arrivals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=1500)
    parser.add_argument("--rate-limit", type=float, default=10.0)
    parser.add_argument("--sample-ms", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        video = Path(tmp) / "bench.mp4"
        make_video(video, args.chunks)
        chunks = split(video, Path(tmp) / "chunks")
        rows = []
        for c in args.concurrency:
            log = Path(tmp) / f"requests-{c}.jsonl"
            server = Server(ServeConfig(port=0, api_key=KEY, latency_ms=args.latency_ms,
                                        request_log=str(log), workers=max(args.concurrency) + 2))
            server.start()
            try:
                wall = predict_all(server, chunks, c, args.rate_limit, args.sample_ms)
            finally:
                server.stop(grace=1)
            ideal = math.ceil(len(chunks) / c) * latency
            rows.append((c, wall, ideal, max_per_second(log)))
    return report(rows, len(chunks), args.rate_limit)


def report(rows: list[tuple[int, float, float, int]], chunks: int, rate: float) -> int:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{chunks} chunks, rate limit {rate:g}/s; load average {load} on {os.cpu_count()} cores")
    print(f"{'concurrency':>11} {'wall s':>8} {'ideal s':>8} {'wall/ideal':>10} "
          f"{'speed-up':>9} {'max req/s':>9}")
    base = rows[0][1]
    for c, wall, ideal, peak in rows:
        print(f"{c:>11} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>10.2f} {base / wall:>8.2f}x "
              f"{peak:>9}")
    c8 = next((r for r in rows if r[0] == 8), rows[-1])
    ok = base / c8[1] >= 3 and c8[1] <= 1.3 * c8[2] and all(r[3] <= rate for r in rows)
    print("bar (C=8 >= 3x C=1, within 1.3x ideal, req/s <= limit):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
