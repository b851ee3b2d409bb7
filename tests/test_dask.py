"""The Dask engine: a LocalCluster run and a run on `dask scheduler` + `dask worker` processes
give the local run's files, byte for byte."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_support import (
    MAX_BYTES,
    REPO,
    cli,
    make_video,
    result_files,
    run_cli,
    stop_process,
    summary,
    wait_for,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline._cli.main import main
from pipeline.batch.dask_engine import rate_shares
from pipeline.serve.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.dask, pytest.mark.slow]

DASK = str(Path(sys.executable).parent / "dask")
KEY = "dask-test-key"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask-videos")
    make_video(root / "one.mp4", seconds=10, hue=90)
    make_video(root / "two.mp4", seconds=10, hue=200)
    return root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> Path:
    """The reference: the same inputs on threads in this process."""
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(["run", str(videos), "--out", str(out), "--max-bytes", MAX_BYTES,
                 "--no-progress"]) == 0
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _processes(worker_env: dict[str, str] | None = None) -> Iterator[str]:
    """`dask scheduler` and one `dask worker` (2 threads) as separate processes on 127.0.0.1,
    running this checkout's code; the worker's environment gets `worker_env`."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", port,
                                  "--no-dashboard"], env=env, **quiet)
    worker = subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "2",
                               "--host", "127.0.0.1", "--no-dashboard"],
                              env={**env, **(worker_env or {})}, **quiet)
    try:
        _wait_for_worker(address)
        yield address
    finally:
        stop_process(worker, 15)
        stop_process(scheduler, 15)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with _processes() as address:
        yield address


def _wait_for_worker(address: str, timeout: float = 60) -> None:
    from distributed import Client
    deadline = time.monotonic() + timeout
    while True:
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise


def test_local_cluster_run_equals_the_local_run(tmp_path: Path, videos: Path,
                                                local_run: Path) -> None:
    """`--dask local:2` writes the same timeline, frames, chunk list and checkpoints."""
    out = tmp_path / "out"
    assert main(["run", str(videos), "--out", str(out), "--max-bytes", MAX_BYTES,
                 "--no-progress", "--dask", "local:2"]) == 0
    assert summary(out)["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    assert result_files(out) == result_files(local_run)


def test_scheduler_and_worker_processes_run_equals_the_local_run(
        tmp_path: Path, videos: Path, local_run: Path, cluster: str) -> None:
    """`--dask tcp://...` against separately started scheduler and worker gives the same files;
    a rerun skips both videos and sends nothing."""
    out = tmp_path / "out"
    args = ["run", str(videos), "--out", str(out), "--max-bytes", MAX_BYTES, "--no-progress",
            "--dask", cluster]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert result_files(out) == result_files(local_run)
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert summary(out)["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    assert summary(out)["requests"] == 0


def test_a_client_without_the_key_drives_workers_that_have_it(
        tmp_path: Path, videos: Path, serve: Callable[..., Server]) -> None:
    """The client has no CLARIFAI_PAT (it makes no backend: the run key comes from the
    settings); the worker reads its own and every chunk reaches the API; a rerun by the same
    key-less client skips both videos without a request."""
    server = serve(api_key=KEY)
    client_env = {k: v for k, v in os.environ.items() if k != "CLARIFAI_PAT"}
    args = ["run", str(videos), "--out", str(tmp_path / "out"), "--max-bytes", MAX_BYTES,
            "--no-progress", "--backend", "clarifai", "--api-base", f"127.0.0.1:{server.port}",
            "--insecure"]
    with _processes({"CLARIFAI_PAT": KEY}) as address:
        done = subprocess.run([sys.executable, "-m", "pipeline", *args, "--dask", address],
                              cwd=REPO, env=client_env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert summary(tmp_path / "out")["counts"] == {"done": 2, "skipped": 0, "failed": 0}
        sent = [json.loads(line) for line in Path(server.config.request_log or "").read_text()
                .splitlines()]
        assert sent and all(r["status"] == 10000 for r in sent)
        again = subprocess.run([sys.executable, "-m", "pipeline", *args, "--dask", address],
                               cwd=REPO, env=client_env, capture_output=True, text=True,
                               timeout=300)
    assert again.returncode == 0, again.stderr
    assert summary(tmp_path / "out")["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    assert summary(tmp_path / "out")["requests"] == 0


def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path, videos: Path) -> None:
    """A scheduler nobody listens on: exit 2 with a message, nothing written."""
    code = main(["run", str(videos), "--out", str(tmp_path / "out"), "--no-progress",
                 "--dask", f"tcp://127.0.0.1:{_free_port()}"])
    assert code == 2
    assert not list((tmp_path / "out").glob("*/timeline.json"))


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.1, 100), count=st.integers(1, 12))
def test_rate_shares_are_whole_and_never_add_up_past_the_limit(rate: float, count: int) -> None:
    """--rate-limit split over a cluster: whole shares of at least 1, even to within 1, summing
    to at most the limit (below 1 request a second, one worker sends at that rate)."""
    workers = [f"tcp://10.0.0.{i}:9000" for i in range(count)]
    shares = rate_shares(rate, workers)
    assert 0 < sum(shares.values()) <= rate and set(shares) <= set(workers)
    if rate >= 1:
        assert all(s == int(s) >= 1 for s in shares.values())
        assert max(shares.values()) - min(shares.values()) <= 1
        assert len(shares) == min(count, int(rate))


def test_a_cluster_never_starts_more_than_the_rate_limit_in_a_second(
        tmp_path: Path, serve: Callable[..., Server]) -> None:
    """Three worker processes at --rate-limit 2 (a third of it each would let all three start
    in the same second): serve's request log never holds more than 2 arrivals in a second."""
    server = serve()
    folder = tmp_path / "videos"
    folder.mkdir()
    for hue in (30, 150, 270):
        make_video(folder / f"v{hue}.mp4", seconds=8, hue=hue)
    done = run_cli("run", str(folder), "--out", str(tmp_path / "out"), "--backend", "clarifai",
                   "--insecure", "--api-base", f"127.0.0.1:{server.port}", "--max-bytes",
                   "100000", "--rate-limit", "2", "--dask", "local:3", "--no-progress",
                   env={"CLARIFAI_PAT": KEY}, timeout=240)
    assert done.returncode == 0, done.stderr
    arrivals = sorted(json.loads(line)["time"]
                      for line in Path(str(server.config.request_log)).read_text().splitlines())
    assert len(arrivals) >= 9
    assert max(sum(1 for u in arrivals if t <= u < t + 1) for t in arrivals) <= 2


def test_out_that_a_worker_cannot_see_is_exit_2(tmp_path: Path, videos: Path) -> None:
    """A worker whose file system does not show --out (its own mount namespace, a tmpfs over
    the folder): the run stops before sending anything, exit 2, naming the problem."""
    shared = tmp_path / "shared"
    shared.mkdir()
    address = f"tcp://127.0.0.1:{_free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                  address.rsplit(":", 1)[1], "--no-dashboard"],
                                 **quiet)  # type: ignore[call-overload]
    hidden = (f"mount -t tmpfs tmpfs {shared} && exec {DASK} worker {address} --nworkers 1 "
              "--nthreads 1 --host 127.0.0.1 --no-dashboard")
    worker = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               hidden], **quiet)  # type: ignore[call-overload]
    try:
        _wait_for_worker(address)
        done = run_cli("run", str(videos), "--out", str(shared / "out"), "--no-progress",
                       "--dask", address)
    finally:
        stop_process(worker, 15)
        stop_process(scheduler, 15)
    assert done.returncode == 2, done.stderr
    assert "not visible from Dask worker" in done.stderr
    assert not list((shared / "out").glob("*/timeline.json"))


def test_sigterm_stops_every_task_and_exits_130(tmp_path: Path,
                                                serve: Callable[..., Server]) -> None:
    """SIGTERM to the client: the stop reaches the workers' tasks, which send nothing new;
    the client exits 130 and summary.json says what was interrupted."""
    server = serve(latency_ms=600)
    folder = tmp_path / "videos"
    folder.mkdir()
    for hue in (60, 240):
        make_video(folder / f"v{hue}.mp4", seconds=16, hue=hue)
    log = Path(str(server.config.request_log))
    proc = cli("run", str(folder), "--out", str(tmp_path / "out"), "--backend", "clarifai",
               "--insecure", "--api-base", f"127.0.0.1:{server.port}", "--max-bytes", "100000",
               "--concurrency", "1", "--dask", "local:2", "--no-progress",
               env={"CLARIFAI_PAT": KEY})
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, 120,
                 "two requests")
        proc.send_signal(signal.SIGTERM)
        stopped = time.time()
        _, err = proc.communicate(timeout=120)
    finally:
        stop_process(proc, 5)
    assert proc.returncode == 130, err
    late = [json.loads(line) for line in log.read_text().splitlines()
            if json.loads(line)["time"] > stopped + 2]
    assert late == []  # nothing new sent once the stop had reached the workers
    entries = summary(tmp_path / "out")["inputs"]
    assert any(e["status"] == "failed" and "interrupted" in (e["error"] or "") for e in entries)
