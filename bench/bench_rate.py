"""`--rate-limit auto` against `serve --key-rate-limit 6`, a limit the client is not told.

Three videos of 40 one-second chunks each (`--max-seconds 1`), up to 16 requests in flight
(`--concurrency 16`), a cold start (an empty cache folder). Cases:

- `single`: one run, threads in one process;
- `dask`: one run on a 3-worker LocalCluster (`--dask local:3`);
- `pair`: a second run with the same key starts when the first is halfway through;
- `fixed`: `--rate-limit 10`, today's fixed limit, for comparison.

The figures come from serve's own request log (arrivals, stamped as they arrive, before any
queue; throttled ones flagged): per case, the requests and the share throttled, the accepted
rate over the steady part (from 5 s after the first request to 3 s before the last accepted
one; for `pair`, from 5 s after the second joined until either ended) against the limit, and
the time from the first request until the accepted requests of the last 2 s first reach 90% of
the limit. Per-second series go to bench/out/rate.json; `--plot FILE` draws them.

    .venv/bin/python bench/bench_rate.py [--cases single,dask,pair,fixed] [--limit 6]
        [--plot docs/rate.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, start_serve  # noqa: E402

KEY = "bench-rate-key"
CHUNKS = 40  # one-second chunks a video
SECOND_MODEL = "e9576d86d2004ed1a38ba0cf39ecb4b1"  # the nsfw model's older id


def make_videos(folder: Path, size: str = "160x120", hue: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        path = folder / f"clip-{i}.mp4"
        if not path.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size={size}:rate=10,hue=h={hue + i * 40}", "-t",
                            str(CHUNKS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
                            "-pix_fmt", "yuv420p", str(path)], check=True)
    return folder


def run_cli(videos: Path, out: Path, port: int, cache: Path, *extra: str,
            ) -> subprocess.Popen[str]:
    shutil.rmtree(out, ignore_errors=True)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(videos), "--out", str(out),
         "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
         "--max-seconds", "1", "--concurrency", "16", "--no-progress", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CLARIFAI_PAT": KEY, "VIDEO_PIPELINE_CACHE_DIR": str(cache)})


def finish(proc: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    _, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{err[-3000:]}")
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def arrivals(log: Path) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return sorted((e for e in entries if e["method"] == "PostModelOutputs"),
                  key=lambda e: e["time"])


def figures(entries: list[dict[str, Any]], limit: int, steady: tuple[float, float] | None = None,
            ) -> dict[str, Any]:
    t0 = entries[0]["time"]
    accepted = [e["time"] - t0 for e in entries if not e["throttled"]]
    throttled = sum(1 for e in entries if e["throttled"])
    lo, hi = steady or (5.0, accepted[-1] - 3.0)
    steady_rate = sum(1 for t in accepted if lo <= t <= hi) / (hi - lo)
    t90 = next((t for t in accepted
                if sum(1 for u in accepted if t - 2 < u <= t) >= 0.9 * 2 * limit), None)
    return {"requests": len(entries), "throttled": throttled,
            "throttled_share": round(throttled / len(entries), 4),
            "steady_s": [round(lo, 1), round(hi, 1)],
            "steady_accepted_per_s": round(steady_rate, 2),
            "steady_share_of_limit": round(steady_rate / limit, 3),
            "seconds_to_90pct": None if t90 is None else round(t90, 1),
            "wall_s": round(entries[-1]["time"] - t0, 1)}


def per_second(entries: list[dict[str, Any]], t0: float, end: int | None = None,
               ) -> dict[str, list[int]]:
    end = end or int(entries[-1]["time"] - t0) + 1
    series = {"accepted": [0] * end, "throttled": [0] * end}
    for e in entries:
        series["throttled" if e["throttled"] else "accepted"][int(e["time"] - t0)] += 1
    return series


def case(name: str, limit: int, work: Path) -> dict[str, Any]:
    log = work / f"{name}-requests.jsonl"
    log.unlink(missing_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="rate-cache-"))
    server, port = start_serve("--request-log", str(log), "--workers", "16",
                               "--key-rate-limit", str(limit))
    small = make_videos(OUT / "rate-videos")
    try:
        if name == "pair":
            return pair(log, work, port, cache, small, limit)
        extra = {"dask": ("--dask", "local:3"), "fixed": ("--rate-limit", "10")}.get(name, ())
        summary = finish(run_cli(small, work / f"{name}-out", port, cache, *extra),
                         work / f"{name}-out")
    finally:
        server.terminate()
        server.wait()
    entries = arrivals(log)
    return {"case": name, "limit": limit, "videos_done": summary["counts"]["done"],
            **figures(entries, limit), "summary_rate": summary.get("rate"),
            "series": per_second(entries, entries[0]["time"])}


def pair(log: Path, work: Path, port: int, cache: Path, small: Path, limit: int,
         ) -> dict[str, Any]:
    """The first run; when half its requests have arrived, a second with the same key, which
    names the model by its older id (the server's log tells the two apart by it)."""
    first = run_cli(small, work / "pair-first", port, cache)
    while not log.exists() or len(log.read_text().splitlines()) < 3 * CHUNKS // 2:
        time.sleep(0.2)
    second = run_cli(small, work / "pair-second", port, Path(tempfile.mkdtemp()),
                     "--model", SECOND_MODEL)
    summaries = [finish(first, work / "pair-first"), finish(second, work / "pair-second")]
    entries = arrivals(log)
    t0 = entries[0]["time"]
    second_entries = [e for e in entries if e["model"] == SECOND_MODEL]
    first_entries = [e for e in entries if e["model"] != SECOND_MODEL]
    joined = second_entries[0]["time"] - t0
    both_end = min(first_entries[-1]["time"], second_entries[-1]["time"]) - t0
    return {"case": "pair", "limit": limit,
            "videos_done": sum(s["counts"]["done"] for s in summaries),
            "second_joined_s": round(joined, 1),
            **figures(entries, limit, steady=(joined + 5, both_end)),
            "first": figures(first_entries, limit), "second": figures(second_entries, limit),
            "summary_rate": [s.get("rate") for s in summaries],
            "series": per_second(entries, t0),
            "series_first": per_second(first_entries, t0, int(entries[-1]["time"] - t0) + 1),
            "series_second": per_second(second_entries, t0, int(entries[-1]["time"] - t0) + 1)}


def plot(results: list[dict[str, Any]], path: Path, limit: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 1, figsize=(7, 1.7 * len(results)), sharex=True,
                             squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        s = r["series"]
        x = range(len(s["accepted"]))
        if r["case"] == "pair":
            first = r["series_first"]["accepted"]
            ax.bar(x, first, width=1, color="#4c72b0", label="first run")
            ax.bar(x, r["series_second"]["accepted"], width=1, bottom=first, color="#55a868",
                   label="second run")
        else:
            ax.bar(x, s["accepted"], width=1, color="#4c72b0", label="accepted")
        ax.bar(x, s["throttled"], width=1, bottom=[-t for t in s["throttled"]], color="#c44e52",
               label="throttled")
        ax.axhline(limit, color="black", linewidth=0.8, linestyle="--")
        ax.set_ylabel("req/s")
        ax.set_title(f"{r['case']}: {r['throttled_share']:.1%} throttled, steady "
                     f"{r['steady_share_of_limit']:.0%} of the limit", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds from the first request")
    fig.tight_layout()
    fig.savefig(path, dpi=72)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="single,dask,pair,fixed")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    work = OUT / "rate"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.cases.split(","):
        load = os.getloadavg()[0]
        result = case(name, args.limit, work) | {"load_before": round(load, 2)}
        print(json.dumps({k: v for k, v in result.items() if not k.startswith("series")}))
        results.append(result)
    (OUT / "rate.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, Path(args.plot), args.limit)


if __name__ == "__main__":
    main()
