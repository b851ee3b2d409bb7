"""--max-billed-frames on a Dask cluster: the budget is one count in the scheduler, so the
workers together never bill past it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from batch_support import make_video, run_cli, summary

from pipeline.serve.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.dask, pytest.mark.slow]

KEY = "billing-dask-key"


def test_workers_share_one_budget(tmp_path: Path, serve: Callable[..., Server]) -> None:
    """Three videos of 12 frames on two worker processes, 4 images a request, a budget of 18:
    serve bills at most 18 over both workers, the run exits 3 with the rest stopped, and a
    rerun bills exactly what was left."""
    server = serve()
    folder = tmp_path / "videos"
    folder.mkdir()
    for hue in (0, 120, 240):
        make_video(folder / f"v{hue}.mp4", seconds=12, hue=hue)
    args = ["run", str(folder), "--out", str(tmp_path / "out"), "--strategy", "frames",
            "--images-per-request", "4", "--backend", "clarifai", "--insecure", "--api-base",
            f"127.0.0.1:{server.port}", "--no-progress", "--dask", "local:2"]
    first = run_cli(*args, "--max-billed-frames", "18", env={"CLARIFAI_PAT": KEY},
                    timeout=300)
    assert first.returncode == 3, first.stderr
    log = Path(str(server.config.request_log))

    def billed() -> list[int]:
        return [json.loads(line)["billed_frames"] for line in log.read_text().splitlines()]

    spent = sum(billed())
    assert 0 < spent <= 18 and spent == summary(tmp_path / "out")["frames_billed"]
    assert summary(tmp_path / "out")["counts"].get("stopped", 0) >= 1
    before = len(billed())
    again = run_cli(*args, env={"CLARIFAI_PAT": KEY}, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sum(billed()[before:]) == 36 - spent
