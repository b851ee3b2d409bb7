"""Split benchmark: `video-pipeline split` (the whole command: interpreter, imports, ffprobe,
planning, cutting, verifying, chunks.json) against `cp` of the same file, in interleaved pairs,
at 30 minutes of 720p (~715 MB) and, with --ten-hours, at ten hours (~14.3 GB, the 30 minutes
joined 20 times by stream copy, deleted afterwards unless --keep).

Also: chunks against the lower bound ceil(bytes / limit), the largest chunk against the limit,
frames conserved, and the naive average-bit-rate split for comparison."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, settle, sh, thirty_minute_720p, timed  # noqa: E402

from pipeline.media import mp4read  # noqa: E402
from pipeline.types import Limits  # noqa: E402

CLI = [sys.executable, "-m", "pipeline"]


def cp_once(src: Path) -> float:
    dst = OUT / "cp-copy.mp4"
    settle()
    _, seconds = timed(lambda: sh("cp", str(src), str(dst)))
    dst.unlink()
    return seconds


def split_once(src: Path, dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    settle()
    _, seconds = timed(lambda: subprocess.run([*CLI, "split", str(src), "--out", str(dest)],
                                              check=True, capture_output=True))
    return seconds


def pairs(src: Path, n: int) -> tuple[list[float], list[float]]:
    """n interleaved (split, cp) pairs, the page cache warm for both."""
    dest = OUT / "chunks"
    os.system(f"cat '{src}' > /dev/null")
    ours, cps = [], []
    for _ in range(n):
        ours.append(split_once(src, dest))
        cps.append(cp_once(src))
    return ours, cps


def report_pairs(label: str, ours: list[float], cps: list[float]) -> None:
    ratios = [a / b for a, b in zip(ours, cps, strict=True)]
    print(f"{label}: split median {statistics.median(ours):.3f} s, cp median "
          f"{statistics.median(cps):.3f} s; median/median "
          f"{statistics.median(ours) / statistics.median(cps):.2f}x; median of pair ratios "
          f"{statistics.median(ratios):.2f}x (pairs: "
          f"{', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(ours, cps, strict=True))})")


def report_chunks(src: Path, limits: Limits) -> None:
    listing = json.loads((OUT / "chunks" / "chunks.json").read_text())["chunks"]
    sizes = [c["size_bytes"] for c in listing]
    frames = sum(c["frames"] for c in listing)
    table = mp4read.video_tables(str(src))
    source_frames = len(next(iter(table.values())).sizes)
    lower = math.ceil(src.stat().st_size / limits.max_bytes)
    print(f"  chunks {len(listing)} against a lower bound of {lower} "
          f"({(len(listing) / lower - 1) * 100:+.1f}%); largest {max(sizes):,} bytes "
          f"({max(sizes) / limits.max_bytes:.3f} of the limit); over: "
          f"{sum(s > limits.max_bytes for s in sizes)}; frames {frames:,} of {source_frames:,}")


def naive_split(src: Path, limits: Limits, duration_s: float) -> tuple[int, int, int]:
    """segment_time = duration * limit / size (the average-bit-rate estimate)."""
    dest = OUT / "naive"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    seg = duration_s * limits.max_bytes / src.stat().st_size
    sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), "-map", "0:v", "-c", "copy",
       "-f", "segment", "-segment_time", f"{seg:.3f}", "-reset_timestamps", "1",
       str(dest / "n%04d.mp4"))
    sizes = [p.stat().st_size for p in dest.iterdir()]
    shutil.rmtree(dest)
    return len(sizes), sum(s > limits.max_bytes for s in sizes), max(sizes)


def ten_hours(thirty: Path) -> Path:
    path = OUT / "ten-hours.mp4"
    if not path.exists():
        listing = OUT / "concat10h.txt"
        listing.write_text(f"file '{thirty.name}'\n" * 20)
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i",
           str(listing), "-c", "copy", str(path))
    return path


def probe_and_plan(src: Path) -> None:
    """probe + plan alone, in a fresh process: wall time and peak memory (ru_maxrss)."""
    code = ("import resource, time; t = time.perf_counter(); "
            "from pipeline.probe import probe; from pipeline import segment; "
            "from pipeline.types import Limits; "
            f"info = probe({str(src)!r}); plan = segment.make_plan(info, Limits()); "
            "print(len(plan.chunks), round(time.perf_counter() - t, 3), "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    print(f"  probe + plan in a fresh process: {out[1]} s, peak {int(out[2]) / 1024:.0f} MB "
          f"({out[0]} chunks planned)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--ten-hours", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the ten-hour file")
    args = parser.parse_args()
    limits = Limits.for_mode("bytes")
    thirty = thirty_minute_720p()
    print(f"30 minutes: {thirty.stat().st_size:,} bytes")
    report_pairs("30 min", *pairs(thirty, args.pairs))
    report_chunks(thirty, limits)
    probe_and_plan(thirty)
    n, over, largest = naive_split(thirty, limits, 1800)
    print(f"  naive average-bit-rate split: {n} chunks, {over} over the limit, largest "
          f"{largest:,} bytes")
    if args.ten_hours:
        big = ten_hours(thirty)
        print(f"ten hours: {big.stat().st_size:,} bytes")
        report_pairs("10 h", *pairs(big, 3))
        report_chunks(big, limits)
        probe_and_plan(big)
        if not args.keep:
            big.unlink()
    shutil.rmtree(OUT / "chunks", ignore_errors=True)


if __name__ == "__main__":
    main()
