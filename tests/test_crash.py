"""Crash safety: SIGKILL at any moment then a rerun (proved on `serve`'s request log), and SIGTERM
(exit 130, resumable)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_support import (
    MAX_BYTES,
    by_source,
    checkpoints,
    cli,
    kill_after_saving,
    make_video,
    run_cli,
    start_serve,
    stop_process,
    summary,
    wait_for,
)

pytestmark = pytest.mark.integration

KEY = "test-key-not-secret"


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s: six or more chunks at MAX_BYTES."""
    return make_video(tmp_path_factory.mktemp("crash") / "long.mp4", seconds=24, hue=30)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`video-pipeline serve` on 127.0.0.1 with a key, 300 ms latency and a request log."""
    log = tmp_path_factory.mktemp("serve") / "requests.jsonl"
    proc, port = start_serve("--api-key", KEY, "--latency-ms", "300", "--request-log", str(log))
    try:
        yield f"127.0.0.1:{port}", log
    finally:
        stop_process(proc, 10)


def _clarifai(video: Path, out: Path, api: str) -> list[str]:
    return ["run", str(video), "--out", str(out), "--max-bytes", MAX_BYTES, "--no-progress",
            "--backend", "clarifai", "--insecure", "--api-base", api, "--concurrency", "2"]


def _requests(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _sent_since(log: Path, since: float) -> list[int]:
    """Sizes of the requests that reached serve after `since` (epoch seconds). Entries carry the
    time each request arrived, so answers to a killed run that are logged late don't count."""
    return [int(str(r["size_bytes"])) for r in _requests(log) if float(str(r["time"])) >= since]


def test_sigkill_then_rerun_sends_no_finished_chunk_again(
        tmp_path: Path, long_video: Path, serve: tuple[str, Path]) -> None:
    """Killed with SIGKILL after some chunks are saved, a rerun completes; serve's request log
    shows no saved chunk sent again, and timeline.json equals an uninterrupted run's."""
    api, log = serve
    env = {"CLARIFAI_PAT": KEY}
    reference = tmp_path / "reference"
    done = run_cli(*_clarifai(long_video, reference, api), env=env)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out"
    saved, sizes = kill_after_saving(cli(*_clarifai(long_video, out, api), env=env), out, 2)
    rerun_started = time.time()
    again = run_cli(*_clarifai(long_video, out, api), env=env)
    assert again.returncode == 0, again.stderr
    resent = _sent_since(log, rerun_started)
    assert not {sizes[i] for i in saved} & set(resent)
    assert sorted(resent) == sorted(sizes[i] for i in sizes if i not in saved)
    (entry,) = summary(out)["inputs"]
    assert (entry["resumed"], entry["requests"]) == (len(saved), len(sizes) - len(saved))
    name = next(out.glob("*/timeline.json")).relative_to(out)
    assert (out / name).read_bytes() == (reference / name).read_bytes()

    rerun_started = time.time()
    rerun = run_cli(*_clarifai(long_video, out, api), env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert _sent_since(log, rerun_started) == []
    assert summary(out)["requests"] == 0


def test_sigterm_finishes_in_flight_chunks_exits_130_and_resumes(
        tmp_path: Path, long_video: Path) -> None:
    """SIGTERM stops the run: chunks in flight are saved, nothing new starts, exit code 130,
    summary.json says interrupted; the rerun sends only the rest and exits 0."""
    out = tmp_path / "out"
    args = ["run", str(long_video), "--out", str(out), "--max-bytes", MAX_BYTES,
            "--no-progress", "--concurrency", "1"]
    proc = cli(*args)
    try:
        wait_for(lambda: len(checkpoints(out)) >= 1, 60, "a saved chunk")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "SIGTERM: stopping" in err and "rerun to resume" in err
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "failed" and "interrupted" in entry["error"]
    saved = len(checkpoints(out))
    assert 1 <= saved < entry["chunks"]
    assert not list(out.glob("*/timeline.json"))

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    entry = by_source(out)["long.mp4"]
    assert (entry["status"], entry["resumed"]) == ("done", saved)
    assert entry["requests"] == entry["chunks"] - saved
