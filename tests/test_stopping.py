"""SIGTERM ends any run within 10 s: a request that never returns, a retry backoff, a wait for a
lock, a storage endpoint that never answers. Exit 130, summary.json written (no input left
`pending`), and a rerun resumes."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from batch_support import MAX_BYTES, checkpoints, cli, make_video, run_cli, summary, wait_for
from clarifai_grpc.grpc.api import service_pb2, service_pb2_grpc

from pipeline.batch.identity import video_id
from pipeline.batch.locks import VideoLock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "test-key-stopping-51c0"
LIMIT_S = 10.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stopping")
    return {"a": make_video(folder / "a.mp4", seconds=12, hue=10),
            "b": make_video(folder / "b.mp4", seconds=8, hue=200),
            "long": make_video(folder / "long.mp4", seconds=40, hue=120)}


class _Stuck(service_pb2_grpc.V2Servicer):
    """A Clarifai-compatible server whose PostModelOutputs answers with `answer()`, after
    holding each request until `release` is set (or for good)."""

    def __init__(self, answer: Callable[[grpc.ServicerContext], object]) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.arrived = 0

    def PostModelOutputs(self, request: object, context: grpc.ServicerContext) -> object:  # noqa: N802
        self.arrived += 1
        return self.answer(context)


@pytest.fixture
def grpc_server() -> Iterator[Callable[[_Stuck], int]]:
    servers: list[grpc.Server] = []

    def start(servicer: _Stuck) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(8))
        service_pb2_grpc.add_V2Servicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(0)


def _run(port: int, out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return cli("run", *map(str, inputs), "--out", str(out), "--backend", "clarifai",
               "--api-base", f"127.0.0.1:{port}", "--insecure", "--no-progress",
               "--max-bytes", MAX_BYTES, *extra, env={"CLARIFAI_PAT": KEY})


def _sigterm_after(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> tuple[float, str]:
    """SIGTERM once `ready()`, then the seconds until the process exits, and its stderr."""
    try:
        wait_for(ready, 60, "the run to reach the wait")
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        return time.monotonic() - sent, err
    finally:
        proc.kill()


def _no_pending(out: Path) -> list[dict[str, object]]:
    inputs: list[dict[str, object]] = summary(out)["inputs"]
    assert all(e["status"] != "pending" for e in inputs), inputs
    return inputs


def test_a_request_that_never_returns_is_cancelled_and_the_run_ends_within_10_s(
        tmp_path: Path, videos: dict[str, Path], grpc_server: Callable[[_Stuck], int]) -> None:
    """A server that holds every request (a 60 s+ deadline each): SIGTERM ends the run within
    10 s, exit 130, both inputs interrupted in summary.json, nothing left pending."""
    servicer = _Stuck(lambda context: servicer.release.wait(300))
    port = grpc_server(servicer)
    out = tmp_path / "out"
    proc = _run(port, out, videos["a"], videos["b"])
    took, err = _sigterm_after(proc, lambda: servicer.arrived >= 1)
    servicer.release.set()
    assert proc.returncode == 130, err
    assert took < LIMIT_S, f"{took:.1f} s from SIGTERM to exit"
    assert "Traceback" not in err
    inputs = _no_pending(out)
    assert all(e["status"] == "failed" and "interrupted" in str(e["error"]) for e in inputs)


def test_a_retry_backoff_ends_at_sigterm(
        tmp_path: Path, videos: dict[str, Path], grpc_server: Callable[[_Stuck], int]) -> None:
    """A server that is always UNAVAILABLE keeps the client in its retry backoff (waits of up
    to 30 s): SIGTERM ends the run within 10 s, exit 130."""
    def unavailable(context: grpc.ServicerContext) -> object:
        context.abort(grpc.StatusCode.UNAVAILABLE, "down for maintenance")
        return service_pb2.MultiOutputResponse()

    servicer = _Stuck(unavailable)
    port = grpc_server(servicer)
    out = tmp_path / "out"
    proc = _run(port, out, videos["a"])
    took, err = _sigterm_after(proc, lambda: servicer.arrived >= 3)
    assert proc.returncode == 130, err
    assert took < LIMIT_S, f"{took:.1f} s from SIGTERM to exit"
    _no_pending(out)


def test_a_wait_for_another_runs_lock_ends_at_sigterm(
        tmp_path: Path, videos: dict[str, Path]) -> None:
    """A run waiting (--lock-wait 600) for a video another run holds ends within 10 s of
    SIGTERM, exit 130, and says the video was interrupted."""
    out = tmp_path / "out"
    with VideoLock(out, video_id(str(videos["a"]))) as held:
        held.acquire()
        waiter = cli("run", str(videos["a"]), "--out", str(out), "--no-progress",
                     "--lock-wait", "600")
        started = time.monotonic()
        took, err = _sigterm_after(waiter, lambda: time.monotonic() - started > 3)
    assert waiter.returncode == 130, err
    assert took < LIMIT_S, f"{took:.1f} s from SIGTERM to exit"
    (entry,) = _no_pending(out)
    assert entry["status"] == "failed" and "interrupted" in str(entry["error"])


def test_storage_that_never_answers_is_abandoned_within_10_s(
        tmp_path: Path, videos: dict[str, Path]) -> None:
    """URL mode against an object store that accepts connections and never answers (nothing we
    can cancel from Python): the process still ends within 10 s of SIGTERM, exit 130."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.extend(
        silent.accept()[0] for _ in range(16)), daemon=True)
    accepting.start()
    try:
        proc = cli("run", str(videos["a"]), "--out", str(tmp_path / "out"), "--no-progress",
                   "--backend", "clarifai", "--api-base", "127.0.0.1:1", "--insecure",
                   "--mode", "url", "--stage", "s3://bucket/prefix",
                   "--s3-endpoint-url", f"http://127.0.0.1:{port}",
                   env={"CLARIFAI_PAT": KEY, "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"})
        took, err = _sigterm_after(proc, lambda: len(held) >= 1)
    finally:
        silent.close()
        for conn in held:
            conn.close()
    assert proc.returncode == 130, err
    assert took < LIMIT_S, f"{took:.1f} s from SIGTERM to exit"
    assert "Traceback" not in err


def test_after_sigterm_a_rerun_resumes_and_is_done(
        tmp_path: Path, videos: dict[str, Path]) -> None:
    """A local run stopped by SIGTERM mid-video exits 130 within 10 s with its finished
    chunks saved; the rerun is done, resuming from them."""
    out = tmp_path / "out"
    args = ("run", str(videos["long"]), "--out", str(out), "--no-progress",
            "--max-bytes", MAX_BYTES, "--concurrency", "1")
    proc = cli(*args)
    took, err = _sigterm_after(proc, lambda: len(checkpoints(out)) >= 1)
    assert proc.returncode == 130, err
    assert took < LIMIT_S, f"{took:.1f} s from SIGTERM to exit"
    (entry,) = _no_pending(out)
    assert "interrupted" in str(entry["error"])
    saved = len(checkpoints(out))
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    (entry,) = summary(out)["inputs"]
    assert (entry["status"], entry["resumed"]) == ("done", saved)
