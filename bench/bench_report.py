"""Results on a ten-hour video: a synthetic timeline.json of 36,000 frames x 20 concepts (one
frame a second, ~400 chunks, some retried) beside a real ten-hour source (160x90, for the
thumbnails), then:

1. `video-pipeline report DIR/VIDEO_ID`, the whole command in its own process: wall time and
   peak RSS (from wait4), with segments.json absent (found again) and present;
2. the segments-and-exports step of a run (segments.json, frames.csv, frames.jsonl,
   segments.csv, segments.vtt) and the streamed timeline.json, in a process that holds the
   36,000 frames as a run does: seconds and that process's peak RSS.

Bars: report under 5 s and 400 MB; segments and exports under 2 s.
usage: bench_report.py [RUNS]"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT, sh

from pipeline.output import timeline
from pipeline.types import Concept, Frame

FRAMES, CONCEPTS, SAMPLE_MS = 36_000, 20, 1000
NAMES = ["person", "outdoors", "indoors", "car", "text", "crowd", "sport", "water", "animal",
         "food", "night", "sky", "tree", "building", "screen", "music", "dance", "road",
         "face", "vehicle"]
HERE = Path(__file__).resolve().parent
VIDEO_DIR = OUT / "report" / "ten-hours-0001"


def ten_hour_source() -> Path:
    path = OUT / "report" / "ten-hours.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
           "testsrc2=size=160x90:rate=2", "-t", str(FRAMES), "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", str(path))
    return path


def synthetic_values() -> np.ndarray:
    """Smooth random walks squashed to 0..1: concepts come and go over minutes, with noise."""
    rng = np.random.default_rng(7)
    walk = rng.normal(size=(FRAMES + 600, CONCEPTS)).cumsum(axis=0)
    kernel = np.ones(120) / 120
    smooth = np.stack([np.convolve(walk[:, j], kernel, mode="same")
                       for j in range(CONCEPTS)], axis=1)[300:300 + FRAMES]
    smooth = (smooth - smooth.mean(0)) / (smooth.std(0) + 1e-9)
    noisy = smooth * 1.5 - 1.0 + rng.normal(scale=0.15, size=smooth.shape)
    return np.round(1 / (1 + np.exp(-noisy)), 6)


def write_synthetic_timeline(source: Path) -> None:
    path = VIDEO_DIR / "timeline.json"
    if path.exists():
        return
    values = synthetic_values().tolist()
    rng = np.random.default_rng(11)
    chunks: list[dict[str, Any]] = []
    start = 0
    while start < FRAMES * SAMPLE_MS:
        end = min(FRAMES * SAMPLE_MS, start + int(rng.integers(80_000, 100_000)))
        chunks.append({"index": len(chunks), "start_ms": start, "end_ms": end,
                       "size_bytes": int(rng.integers(8_500_000, 9_990_000)),
                       "frames": (end - start) * 30 // 1000, "reencoded": False,
                       "attempts": int(rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 3]))})
        start = end
    head = {"source": {"path": str(source), "duration_ms": FRAMES * SAMPLE_MS,
                       "size_bytes": sum(c["size_bytes"] for c in chunks)},
            "backend": "clarifai", "model": {"id": "general-image-recognition",
                                             "name": "general"},
            "sample_ms": SAMPLE_MS,
            "limits": {"mode": "bytes", "max_bytes": 10_000_000, "max_duration_ms": 600_000},
            "chunks": chunks}
    frames = (Frame(i * SAMPLE_MS + SAMPLE_MS // 2, tuple(
        Concept(f"ai_{j:08d}", NAMES[j], v) for j, v in enumerate(row)))
        for i, row in enumerate(values))
    VIDEO_DIR.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(timeline.pieces(head, frames, {}))


def report_runs(runs: int, label: str) -> None:
    argv = [sys.executable, "-m", "pipeline", "report", str(VIDEO_DIR)]
    walls, cpus, peaks = [], [], []
    for _ in range(runs):
        wall, rss, _out = measured_wait4(argv)
        walls.append(wall)
        cpus.append(LAST_CPU[0])
        peaks.append(rss)
    print(f"| report, {label} | {min(walls):.2f} | {statistics.median(walls):.2f} | "
          f"{min(cpus):.2f} | {max(peaks):.0f} |")


LAST_CPU = [0.0]  # user + system seconds of the last measured process (its ffmpegs excluded)


def measured_wait4(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout), the child reaped by wait4 for its own rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    if proc.returncode:
        sys.exit(f"{' '.join(argv[:5])} failed with exit {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def outputs_step() -> None:
    """In this process: hold the frames as a run does, then time the step (prints JSON)."""
    from pipeline.output.exports import Outputs, write_outputs
    from pipeline.output.files import atomic_write_lines
    path = VIDEO_DIR / "timeline.json"
    frames = list(timeline.read_frames(path))
    head = timeline.read_head(path)
    start = time.perf_counter()
    write_outputs(VIDEO_DIR, frames, sample_ms=SAMPLE_MS, duration_ms=FRAMES * SAMPLE_MS,
                  outputs=Outputs())
    exported = time.perf_counter()
    atomic_write_lines(VIDEO_DIR / "timeline.json", timeline.pieces(head, frames, {}))
    done = time.perf_counter()
    print(json.dumps({"segments_and_exports_s": exported - start,
                      "timeline_json_s": done - exported}))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    write_synthetic_timeline(ten_hour_source())
    size = (VIDEO_DIR / "timeline.json").stat().st_size
    print(f"timeline.json: {FRAMES:,} frames x {CONCEPTS} concepts, {size / 1e6:.1f} MB")
    (VIDEO_DIR / "segments.json").unlink(missing_ok=True)
    measured_wait4([sys.executable, "-m", "pipeline", "report", str(VIDEO_DIR)])  # font cache
    print("\n| step | fastest s | median s | CPU s | peak RSS MB |\n|---|---|---|---|---|")
    report_runs(runs, "segments found again")
    steps = []
    for _ in range(runs):
        wall, rss, out = measured_wait4([sys.executable, str(HERE / "bench_report.py"),
                                         "--outputs-step"])
        steps.append((json.loads(out), rss))
    exports_s = [s["segments_and_exports_s"] for s, _ in steps]
    timeline_s = [s["timeline_json_s"] for s, _ in steps]
    peak = max(rss for _, rss in steps)
    print(f"| segments + exports (5 files) | {min(exports_s):.2f} | "
          f"{statistics.median(exports_s):.2f} | | {peak:.0f} (the process holding the frames) |")
    print(f"| timeline.json, streamed | {min(timeline_s):.2f} | "
          f"{statistics.median(timeline_s):.2f} | | |")
    report_runs(runs, "segments.json reused")
    segments = json.loads((VIDEO_DIR / "segments.json").read_text())
    print(f"\n{sum(len(c['segments']) for c in segments['concepts']):,} segments; "
          f"report.html {(VIDEO_DIR / 'report.html').stat().st_size / 1e6:.2f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--outputs-step"]:
        outputs_step()
    else:
        main()
