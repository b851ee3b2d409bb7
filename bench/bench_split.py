"""Split benchmark: a 30-minute 720p video (~700 MB) under the 10 MB byte limit.

Reports, measured side by side in one run: split time as a ratio to `cp` of the same file, chunk
count against the lower bound ceil(bytes / budget), the largest chunk against the limit, the
fill ratio, frames conserved; and the naive average-bit-rate split for comparison."""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, settle, sh, thirty_minute_720p, timed  # noqa: E402

from pipeline import segment  # noqa: E402
from pipeline.media import mp4read  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.types import Limits  # noqa: E402


def cp_time(src: Path) -> float:
    dst = OUT / "cp-copy.mp4"
    settle()
    _, seconds = timed(lambda: sh("cp", str(src), str(dst)))
    dst.unlink()
    return seconds


def our_split(src: Path, limits: Limits) -> tuple[list, float, float, float]:
    dest = OUT / "chunks"
    shutil.rmtree(dest, ignore_errors=True)
    settle()
    info, t_probe = timed(lambda: probe(str(src)))
    chunks, t_split = timed(lambda: segment.split(info, limits, str(dest)))
    plan, t_plan = timed(lambda: segment.make_plan(info, limits))  # inside split; shown apart
    assert len(plan.chunks) == len(chunks)
    return chunks, t_probe, t_plan, t_split - t_plan


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


def main() -> None:
    src = thirty_minute_720p()
    limits = Limits.for_mode("bytes")
    os.system(f"cat '{src}' > /dev/null")  # warm the page cache for both sides
    size = src.stat().st_size
    cps = [cp_time(src) for _ in range(3)]
    runs = [our_split(src, limits) for _ in range(3)]
    cps += [cp_time(src) for _ in range(2)]
    cp = sorted(cps)[len(cps) // 2]
    chunks, t_probe, t_plan, t_cut = min(runs, key=lambda r: r[1] + r[2] + r[3])
    totals = sorted(r[1] + r[2] + r[3] for r in runs)
    info = probe(str(src))
    assert info.scan is not None
    total = t_probe + t_plan + t_cut
    frames = sum(track.frames for c in chunks if (track := mp4read.video_track(c.path)))
    lower = math.ceil(size / limits.max_bytes)
    sizes = [c.size_bytes for c in chunks]
    print(f"source: {src.name}, {size:,} bytes, {info.duration_ms / 1000:.1f} s, "
          f"{len(info.scan.video):,} video frames, {len(info.scan.keyframes)} keyframes")
    print(f"cp: median {cp:.3f} s of {len(cps)} ({', '.join(f'{c:.3f}' for c in cps)})")
    print(f"our split, fastest of 3: {total:.3f} s = probe {t_probe:.3f} + plan {t_plan:.3f} + "
          f"cut+verify {t_cut:.3f} (runs: {', '.join(f'{t:.3f}' for t in totals)})")
    print(f"split / cp: median / median {totals[1] / cp:.2f}x; fastest / fastest "
          f"{totals[0] / min(cps):.2f}x")
    print(f"chunks: {len(chunks)} (lower bound ceil(bytes/budget) = {lower}; "
          f"{(len(chunks) / lower - 1) * 100:+.1f}%)")
    print(f"largest chunk: {max(sizes):,} bytes of {limits.max_bytes:,} "
          f"({max(sizes) / limits.max_bytes:.3f}); over the limit: "
          f"{sum(s > limits.max_bytes for s in sizes)}")
    print(f"fill ratio (mean chunk / limit): {sum(sizes) / len(sizes) / limits.max_bytes:.3f}")
    print(f"frames: {frames:,} in chunks vs {len(info.scan.video):,} in source "
          f"({'conserved' if frames == len(info.scan.video) else 'MISMATCH'})")
    n, over, largest = naive_split(src, limits, info.duration_ms / 1000)
    print(f"naive average-bit-rate split: {n} chunks, {over} over the limit, largest "
          f"{largest:,} bytes")
    shutil.rmtree(OUT / "chunks", ignore_errors=True)


if __name__ == "__main__":
    main()
