"""Billing you can see and cap: serve's request log counts the frames each request bills, a run
counts what it billed (summary.json and its closing line), and `--max-billed-frames` stops a
batch before a request would take it past the budget (exit 3), whose rerun bills only what was
left."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch_support import make_video, run_cli, summary

from pipeline.batch.runner import Runner
from pipeline.serve.faults import Fault
from pipeline.serve.server import Server
from pipeline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "billing-key-93b2"
SECONDS = 12  # 12 instants a video; 4 images a request: 3 requests of 4 frames each


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("billing") / "videos"
    folder.mkdir()
    for hue in (0, 120, 240):
        make_video(folder / f"v{hue}.mp4", seconds=SECONDS, hue=hue)
    return folder


def billed(server: Server, since: int = 0) -> list[int]:
    """billed_frames of each PostModelOutputs in serve's request log, from line `since`."""
    lines = Path(str(server.config.request_log)).read_text().splitlines()[since:]
    return [r["billed_frames"] for r in map(json.loads, lines)
            if r["method"] == "PostModelOutputs"]


def logged(server: Server) -> int:
    return len(Path(str(server.config.request_log)).read_text().splitlines())


def run(videos: Path, out: Path, server: Server, *flags: str) -> Any:
    return run_cli("run", str(videos), "--out", str(out), "--strategy", "frames",
                   "--images-per-request", "4", "--backend", "clarifai", "--insecure",
                   "--api-base", f"127.0.0.1:{server.port}", "--no-progress", *flags,
                   env={"CLARIFAI_PAT": KEY}, timeout=300)


def test_serve_logs_the_frames_each_request_bills(
        videos: Path, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """A video request bills the frames serve sampled in it, an image batch its images, and a
    request that failed (an injected fault, retried) bills nothing."""
    server = serve(fault_at=frozenset({1}), faults=(Fault.parse("UNAVAILABLE"),))
    clarifai = {"backend": "clarifai", "api_base": f"127.0.0.1:{server.port}",
                "insecure": True, "api_key": KEY, "concurrency": 1}
    video = str(videos / "v0.mp4")
    (copy,) = Runner(Settings.from_options(**clarifai), str(tmp_path / "copy")).run([video])
    (frames,) = Runner(Settings.from_options(strategy="frames", images_per_request=5,
                                             **clarifai), str(tmp_path / "frames")).run([video])
    entries = [json.loads(line) for line in Path(str(server.config.request_log)).read_text()
               .splitlines()]
    assert [(e["kind"], e["fault"], e["billed_frames"]) for e in entries] == [
        ("video-bytes", "grpc:UNAVAILABLE", 0), ("video-bytes", None, 12),
        ("image-bytes*5", None, 5), ("image-bytes*5", None, 5), ("image-bytes*2", None, 2)]
    assert (copy.frames_billed, frames.frames_billed) == (12, 12)


def test_a_budget_stops_the_batch_before_a_request_would_pass_it(
        videos: Path, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """36 frames to bill, 4 a request, a budget of 22: serve bills 20, the run says so (its
    closing line, summary.json) and exits 3, the videos left marked stopped; a rerun with a
    larger budget bills the 16 left and finishes, exit 0."""
    server = serve()
    out = tmp_path / "out"
    first = run(videos, out, server, "--max-billed-frames", "22", "--concurrency", "1")
    assert first.returncode == 3, first.stderr
    assert sum(billed(server)) == 20
    assert "stopped: billing budget reached" in first.stdout
    assert " sampled, 20 billed, 0 carried" in first.stdout
    told = summary(out)
    assert told["frames_billed"] == 20 and told["counts"]["stopped"] == 2
    assert [e["status"] for e in told["inputs"]] == ["done", "stopped", "stopped"]
    assert "billing budget reached" in told["inputs"][1]["note"]
    since = logged(server)
    second = run(videos, out, server, "--max-billed-frames", "100", "--concurrency", "1")
    assert second.returncode == 0, second.stderr
    assert sum(billed(server, since)) == 16 == summary(out)["frames_billed"]
    assert [e["status"] for e in summary(out)["inputs"]] == ["skipped", "done", "done"]


def test_requests_on_several_threads_never_bill_past_the_budget(
        videos: Path, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """Four requests in flight at once and a budget of 18: serve bills at most 18; the rerun
    bills exactly what the first left, so the two together bill each frame once."""
    server = serve()
    out = tmp_path / "out"
    first = run(videos, out, server, "--max-billed-frames", "18", "--concurrency", "4")
    assert first.returncode == 3, first.stderr
    spent = sum(billed(server))
    assert 0 < spent <= 18 and spent == summary(out)["frames_billed"]
    since = logged(server)
    assert run(videos, out, server, "--concurrency", "4").returncode == 0
    assert sum(billed(server, since)) == 36 - spent


def test_a_budget_of_nothing_sends_nothing(videos: Path, tmp_path: Path,
                                           serve: Callable[..., Server]) -> None:
    """--max-billed-frames 0: no request, every video stopped, exit 3."""
    server = serve()
    done = run(videos, tmp_path / "out", server, "--max-billed-frames", "0")
    assert done.returncode == 3, done.stderr
    assert billed(server) == []
    assert summary(tmp_path / "out")["counts"]["stopped"] == 3
