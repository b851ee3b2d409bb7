"""Pay for what changes: --skip-similar, the billing budget and faithful proxies, on real footage
through `video-pipeline serve` over real gRPC (frames billed counted from serve's request log).

- skip: a slide talk, a fixed camera and a film (bench/skip_footage.py), each run by frames and
  compact without and with --skip-similar: frames billed, and the skipping run's timeline
  against the full one (same label: the same top concept; mean |d|: each frame's mean absolute
  difference over its concepts, averaged), beside the audit's own figures from summary.json.
- proxy: the film's frames and compact timelines (this tree's defaults, and `--before`'s, a
  checkout of the code before them) against the local backend's exact full-resolution frames
  at the same instants (decode.decode, fast=False: what LocalBackend(exact_frames=True) scores).
- budget: the three videos in one batch with --skip-similar and --max-billed-frames half of
  what they bill: what serve billed against the budget, the exit code, and the rerun's bill.
- bars: compact against copy on the 30-minute 720p benchmark video (bench/common.py): requests
  and bytes (copy's from `split`'s chunk files, compact's from serve's log).

usage: bench_skip.py [skip] [proxy] [budget] [bars] [--before DIR]   (default: all but bars)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import OUT, start_serve, thirty_minute_720p
from skip_footage import KINDS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import skip  # noqa: E402
from pipeline.output import formats  # noqa: E402
from pipeline.types import Frame  # noqa: E402

WORK = OUT / "skip"
STRATEGIES = ("frames", "compact")


def run(video: Path | list[Path], out: Path, port: int, *flags: str,
        repo: Path = REPO) -> int:
    """One `video-pipeline run` through serve, as a child process of `repo`'s code."""
    videos = [str(v) for v in (video if isinstance(video, list) else [video])]
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "pipeline", "run", *videos, "--out", str(out), "--backend",
            "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}", "--no-progress",
            *flags]
    env = {**os.environ, "CLARIFAI_PAT": "bench", "PYTHONPATH": str(repo)}
    return subprocess.run(argv, cwd=repo, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def rerun(videos: list[Path], out: Path, port: int, *flags: str) -> int:
    """The same run again on the same --out (resuming it)."""
    argv = [sys.executable, "-m", "pipeline", "run", *map(str, videos), "--out", str(out),
            "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
            "--no-progress", *flags]
    return subprocess.run(argv, cwd=REPO, env={**os.environ, "CLARIFAI_PAT": "bench"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


class Serve:
    """A serve process of its own with a request log; `billed()` since the last `mark()`."""

    def __init__(self, log: Path) -> None:
        log.unlink(missing_ok=True)
        self.log = log
        self.proc, self.port = start_serve("--request-log", str(log), "--workers", "4")
        self._from = 0

    def mark(self) -> None:
        self._from = len(self._lines())

    def _lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def sent(self) -> list[dict[str, Any]]:
        return [r for r in self._lines()[self._from:] if r["method"] == "PostModelOutputs"]

    def billed(self) -> int:
        return sum(r["billed_frames"] for r in self.sent())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def frames_of(out: Path) -> list[Frame]:
    found = json.loads(next(out.glob("*/timeline.json")).read_text())
    return [formats.frame_from_dict(f) for f in found["frames"]]


def agreement(a: list[Frame], b: list[Frame]) -> dict[str, Any]:
    """Same top concept and mean |d| over the instants both have (pipeline.skip.compare)."""
    at = {f.time_ms: f for f in b}
    pairs = [(f, at[f.time_ms]) for f in a if f.time_ms in at]
    return skip.agreement(pairs).as_dict()


def summary_entry(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((out / "summary.json").read_text())["inputs"][0]
    return found


# -- skip ------------------------------------------------------------------------------------
def bench_skip() -> dict[str, Any]:
    results: dict[str, Any] = {}
    serve = Serve(WORK / "skip-requests.jsonl")
    try:
        for kind, make in KINDS.items():
            video = make()
            for strategy in STRATEGIES:
                row = _with_and_without(serve, video, WORK / kind, strategy)
                results[f"{kind}/{strategy}"] = row
                print(f"{kind} {strategy}: billed {row['billed_full']} -> {row['billed_skip']} "
                      f"({row['billed_share']:.1%}); vs full {row['vs_full']}; audit "
                      f"{row['audit']}", flush=True)
    finally:
        serve.close()
    return results


def _with_and_without(serve: Serve, video: Path, work: Path, strategy: str) -> dict[str, Any]:
    full, skipped = work / f"{strategy}-full", work / f"{strategy}-skip"
    serve.mark()
    assert run(video, full, serve.port, "--strategy", strategy) == 0
    billed_full = serve.billed()
    sent = serve.sent()
    serve.mark()
    assert run(video, skipped, serve.port, "--strategy", strategy, "--skip-similar") == 0
    billed_skip = serve.billed()
    entry = summary_entry(skipped)
    assert entry["frames_billed"] == billed_skip, (entry["frames_billed"], billed_skip)
    return {"sampled": entry["frames_sampled"], "billed_full": billed_full,
            "requests_full": len(sent), "bytes_full": sum(r["size_bytes"] for r in sent),
            "billed_skip": billed_skip, "billed_share": billed_skip / billed_full,
            "carried": entry["frames_carried"],
            "vs_full": agreement(frames_of(skipped), frames_of(full)), "audit": entry["audit"]}


# -- proxy -----------------------------------------------------------------------------------
def reference(video: Path) -> list[Frame]:
    """The local backend's exact full-resolution frames at every instant (cached)."""
    cache = WORK / f"reference-{video.stem}.json"
    if cache.exists():
        return [formats.frame_from_dict(f) for f in json.loads(cache.read_text())]
    from pipeline.backends.local import LocalBackend
    from pipeline.media import decode
    from pipeline.probe import probe
    from pipeline.send import instants
    backend = LocalBackend("nsfw", exact_frames=True)
    grid = instants.grid(probe(str(video)), 1000)
    scores = backend._score_all(decode.decode(str(video), grid, fast=False))
    frames = [Frame(skip.instant_ms(i, 1000), backend._concepts(row))
              for i, row in enumerate(scores)]
    cache.write_text(json.dumps([formats.frame_dict(i, f) for i, f in enumerate(frames)]))
    return frames


def bench_proxy(before: Path | None, skipped: dict[str, Any]) -> dict[str, Any]:
    video = KINDS["film"]()
    ref = reference(video)
    results: dict[str, Any] = {}
    serve = Serve(WORK / "proxy-requests.jsonl")
    try:
        for label, repo in (("after", REPO), ("before", before)):
            if repo is None:
                continue
            for strategy in STRATEGIES:
                out = WORK / "film" / f"{strategy}-full" if label == "after" else \
                    WORK / "film" / f"{strategy}-before"
                serve.mark()
                sent: list[dict[str, Any]] = []
                if label == "before" or not out.exists():
                    assert run(video, out, serve.port, "--strategy", strategy, repo=repo) == 0
                    sent = serve.sent()
                known = skipped.get(f"film/{strategy}", {}) if label == "after" else {}
                found = {**agreement(frames_of(out), ref),
                         "requests": len(sent) or known.get("requests_full"),
                         "bytes": sum(r["size_bytes"] for r in sent) or known.get("bytes_full")}
                results[f"{label}/{strategy}"] = found
                print(f"film {label} {strategy}: {found}", flush=True)
    finally:
        serve.close()
    return results


# -- budget ----------------------------------------------------------------------------------
def bench_budget(skipped: dict[str, Any]) -> dict[str, Any]:
    videos = [make() for make in KINDS.values()]
    total = sum(skipped[f"{k}/frames"]["billed_skip"] for k in KINDS) if skipped else None
    out = WORK / "budget"
    serve = Serve(WORK / "budget-requests.jsonl")
    try:
        if total is None:
            serve.mark()
            assert run(videos, out, serve.port, "--strategy", "frames", "--skip-similar") == 0
            total = serve.billed()
        budget = total // 2
        serve.mark()
        code = run(videos, out, serve.port, "--strategy", "frames", "--skip-similar",
                   "--max-billed-frames", str(budget))
        first = serve.billed()
        serve.mark()
        again = rerun(videos, out, serve.port, "--strategy", "frames", "--skip-similar")
        second = serve.billed()
    finally:
        serve.close()
    found = {"total": total, "budget": budget, "exit": code, "billed": first,
             "rerun_exit": again, "rerun_billed": second, "left": total - first}
    print(f"budget: {found}", flush=True)
    return found


# -- bars ------------------------------------------------------------------------------------
def bench_bars() -> dict[str, Any]:
    video = thirty_minute_720p()
    chunks = WORK / "thirty-split"
    shutil.rmtree(chunks, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pipeline", "split", str(video), "--out",
                    str(chunks)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    listed = json.loads((chunks / "chunks.json").read_text())["chunks"]
    copy = {"requests": len(listed), "bytes": sum(c["size_bytes"] for c in listed)}
    shutil.rmtree(chunks)
    serve = Serve(WORK / "bars-requests.jsonl")
    try:
        assert run(video, WORK / "thirty-compact", serve.port, "--strategy", "compact") == 0
        sent = serve.sent()
    finally:
        serve.close()
    compact = {"requests": len(sent), "bytes": sum(r["size_bytes"] for r in sent)}
    found = {"copy": copy, "compact": compact,
             "fewer_requests": copy["requests"] / compact["requests"],
             "fewer_bytes": copy["bytes"] / compact["bytes"]}
    print(f"bars: {found}", flush=True)
    return found


def tables(results: dict[str, Any]) -> list[str]:
    lines = []
    if "skip" in results:
        lines += ["| footage | strategy | frames billed, full | with --skip-similar | share | "
                  "same label vs full | mean abs d vs full | audit: frames / same label / "
                  "mean abs d | tightened |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
        for name, r in results["skip"].items():
            kind, strategy = name.split("/")
            a, v = r["audit"], r["vs_full"]
            lines.append(f"| {kind} | {strategy} | {r['billed_full']:,} | {r['billed_skip']:,} "
                         f"| {r['billed_share']:.1%} | {v['same_label']:.2%} | "
                         f"{v['mean_abs_diff']:.4f} | {a['frames']} / {a['same_label']:.2%} / "
                         f"{a['mean_abs_diff']:.4f} | {len(a['tightened']) or 'no'} |")
    if "proxy" in results:
        lines += ["", "| film, against the full-resolution frames | same label | mean abs d | "
                  "requests | bytes |", "|---|---:|---:|---:|---:|"]
        for name, r in results["proxy"].items():
            lines.append(f"| {name} | {r['same_label']:.2%} | {r['mean_abs_diff']:.4f} | "
                         f"{r['requests'] or '-'} | {r['bytes'] or '-'} |")
    return lines


def main(args: list[str]) -> None:
    before = None
    if "--before" in args:
        at = args.index("--before")
        before = Path(args[at + 1]).resolve()
        del args[at:at + 2]
    parts = args or ["skip", "proxy", "budget"]
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for part in parts:
        if part == "skip":
            results["skip"] = bench_skip()
        elif part == "proxy":
            results["proxy"] = bench_proxy(before, results.get("skip", {}))
        elif part == "budget":
            results["budget"] = bench_budget(results.get("skip", {}))
        elif part == "bars":
            results["bars"] = bench_bars()
        path.write_text(json.dumps(results, indent=1))
    print("\n".join(tables(results)))
    print(f"(details in {path})")


if __name__ == "__main__":
    main(sys.argv[1:])
