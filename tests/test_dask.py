"""The Dask engine: a LocalCluster run and a run on `dask scheduler` + `dask worker` processes
give the local run's files, byte for byte."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_support import MAX_BYTES, make_video, result_files, run_cli, stop_process, summary

from pipeline._cli.main import main

DASK = str(Path(sys.executable).parent / "dask")


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """`dask scheduler` and one `dask worker` (2 threads) as separate processes on 127.0.0.1."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", port,
                                  "--no-dashboard"], **quiet)  # type: ignore[call-overload]
    worker = subprocess.Popen([DASK, "worker", address, "--nworkers", "1", "--nthreads", "2",
                               "--host", "127.0.0.1", "--no-dashboard"],
                              **quiet)  # type: ignore[call-overload]
    try:
        _wait_for_worker(address)
        yield address
    finally:
        stop_process(worker, 15)
        stop_process(scheduler, 15)


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


def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path, videos: Path) -> None:
    """A scheduler nobody listens on: exit 2 with a message, nothing written."""
    code = main(["run", str(videos), "--out", str(tmp_path / "out"), "--no-progress",
                 "--dask", f"tcp://127.0.0.1:{_free_port()}"])
    assert code == 2
    assert not list((tmp_path / "out").glob("*/timeline.json"))
