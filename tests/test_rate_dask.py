"""`--rate-limit auto` on Dask: one learned rate for the whole cluster, held on the scheduler,
that workers joining or leaving mid-run leave as it was."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_support import REPO, cli, start_serve, stop_process, summary, wait_for

from pipeline.backends.rate_memory import RateMemory, digest

DASK = str(Path(sys.executable).parent / "dask")
KEY = "rate-dask-key-0c4f9e21"
pytestmark = [pytest.mark.integration, pytest.mark.dask, pytest.mark.slow]

QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`serve --key-rate-limit 4` in its own process: its port and request log."""
    log = tmp_path / "requests.jsonl"
    proc, port = start_serve("--api-key", KEY, "--request-log", str(log), "--workers", "8",
                             "--key-rate-limit", "4")
    yield port, log
    stop_process(proc, 10)


def logged(log: Path) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries if e["method"] == "PostModelOutputs"]


def run_args(videos: Path, out: Path, port: int, dask: str) -> list[str]:
    return ["run", str(videos), "--out", str(out), "--backend", "clarifai", "--insecure",
            "--api-base", f"127.0.0.1:{port}", "--max-seconds", "1", "--concurrency", "8",
            "--no-progress", "--dask", dask]


def test_one_learned_rate_for_a_whole_cluster(twenty_second_chunks: Path, tmp_path: Path,
                                              limited: tuple[int, Path]) -> None:
    """Three worker processes learn one rate under a limit of 4 they are not told: few
    requests throttled, every one counted by the one budget, and the rate learned is kept on
    the client's machine under the digest of the key the workers hold."""
    port, log = limited
    cache = tmp_path / "cache"
    proc = cli(*run_args(twenty_second_chunks, tmp_path / "out", port, "local:3"),
               env={"CLARIFAI_PAT": KEY, "VIDEO_PIPELINE_CACHE_DIR": str(cache)})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    found = summary(tmp_path / "out")
    entries = logged(log)
    rate = found["rate"]
    assert found["counts"]["done"] == 3 and rate["mode"] == "auto"
    assert rate["requests"] == len(entries)
    assert rate["throttled"] == sum(e["throttled"] for e in entries) <= 0.1 * len(entries)
    assert 0.6 * 4 <= rate["learned"] <= 0.9 * 4
    memory = RateMemory(cache)
    assert memory.recall(digest(memory.salt, f"127.0.0.1:{port}", KEY)) is not None
    assert KEY not in (cache / "rates.json").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(address: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLARIFAI_PAT": KEY}
    return subprocess.Popen([DASK, "worker", address, "--no-nanny", "--nthreads", "1",
                             "--host", "127.0.0.1", "--no-dashboard"], env=env, **QUIET)


def _workers(address: str) -> int:
    from distributed import Client
    with Client(address, timeout=10) as client:
        return len(client.scheduler_info()["workers"])


def test_workers_joining_and_leaving_change_nothing_for_the_account(
        twenty_second_chunks: Path, tmp_path: Path, limited: tuple[int, Path]) -> None:
    """A run on one worker; a second joins mid-run, then the first is killed (its video goes
    to the second, which waits for the dead worker's lock to go): every video done, the
    budget on the scheduler counted every request, and throttles stay few through both
    changes."""
    port, log = limited
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                  address.rsplit(":", 1)[1], "--no-dashboard"], env=env, **QUIET)
    first = _worker(address)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _quietly(lambda: _workers(address)) == 1, 90, "the first worker")
        proc = cli(*run_args(twenty_second_chunks, tmp_path / "out", port, address),
                   "--lock-wait", "60",
                   env={"CLARIFAI_PAT": KEY, "VIDEO_PIPELINE_CACHE_DIR": str(tmp_path / "c")})
        wait_for(lambda: log.exists() and len(logged(log)) >= 8, 120, "8 requests")
        second = _worker(address)
        wait_for(lambda: _quietly(lambda: _workers(address)) == 2, 90, "the second worker")
        joined = len(logged(log))
        wait_for(lambda: len(logged(log)) >= joined + 8, 120, "8 more requests")
        first.kill()
        _, err = proc.communicate(timeout=300)
    finally:
        for p in (first, second, scheduler):
            if p is not None:
                stop_process(p, 15)
    assert proc.returncode == 0, err[-2000:]
    found = summary(tmp_path / "out")
    entries = logged(log)
    assert found["counts"]["failed"] == 0 and len(list((tmp_path / "out").glob(
        "*/timeline.json"))) == 3
    # A turn taken by the worker that left may never have been sent.
    assert len(entries) <= found["rate"]["requests"] <= len(entries) + 2
    assert sum(e["throttled"] for e in entries) <= 0.1 * len(entries)


def _quietly(probe: Callable[[], int]) -> int:
    try:
        return probe()
    except (OSError, TimeoutError):
        return -1
