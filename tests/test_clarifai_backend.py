"""The clarifai backend against a real `serve` on 127.0.0.1: the whole wire path, no mocks."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import media
import pytest
from batch_support import start_serve, stop_process

from pipeline.backends.clarifai import ClarifaiBackend, Deadline
from pipeline.backends.retry import RetryConfig
from pipeline.batch.runner import Runner
from pipeline.errors import AuthError, OverLimitError, RejectedInputError, TransientBackendError
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Fault, Server
from pipeline.settings import Settings
from pipeline.types import Chunk, Media, VideoFile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "test-key-4f1d9a7c"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def noisy_video(media_dir: Path) -> Path:
    """10 s, 160x120, 10 fps, 1 s GOPs, ~660 kB: about 4 chunks under 200 kB."""
    path = media_dir / "clarifai-noisy.mp4"
    if not path.exists():
        media.testsrc(path, seconds=10, size="160x120", rate=10, gop=10,
                extra_vf="noise=alls=20:allf=t")
    return path


def backend(server: Server, *, key: str = KEY, sleeps: list[float] | None = None,
            **options: Any) -> ClarifaiBackend:
    """A backend pointed at `server`; waits are recorded in `sleeps`, never slept."""
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return ClarifaiBackend("nsfw", key=key, api_base=f"127.0.0.1:{server.port}", insecure=True,
                           sleep=record, rng=random.Random(0), **options)


def requests(server: Server) -> list[dict[str, Any]]:
    path = server.config.request_log
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run(video: Path, out: Path, client: ClarifaiBackend, **options: Any) -> dict[str, Any]:
    """One Runner run with the clarifai backend; returns the video's timeline.json."""
    options.setdefault("max_bytes", 200_000)
    settings = Settings.from_options(backend="clarifai", sample_ms=500, insecure=True, **options)
    (outcome,) = Runner(settings, str(out), backend=client).run([str(video)])
    assert outcome.status == "done", outcome.error
    return json.loads((out / str(outcome.id) / "timeline.json").read_text())


def whole(video: Path) -> tuple[Chunk, Media]:
    """The whole video as one chunk, and its media."""
    chunk = Chunk(0, str(video), Fraction(0), Fraction(10), video.stat().st_size, 100)
    return chunk, VideoFile(chunk.path)


def times(timeline: dict[str, Any]) -> list[int]:
    return [f["frame_info"]["time"] for f in timeline["frames"]]


def test_multi_chunk_run_gives_one_timeline(serve: Callable[..., Server], noisy_video: Path,
                                            tmp_path: Path) -> None:
    """Every chunk goes over gRPC once; the merged frames cover the video in order."""
    server = serve()
    timeline = run(noisy_video, tmp_path / "out", backend(server))
    assert timeline["backend"] == "clarifai" and len(timeline["chunks"]) >= 3
    assert [c["attempts"] for c in timeline["chunks"]] == [1] * len(timeline["chunks"])
    assert len(requests(server)) == len(timeline["chunks"])
    got = times(timeline)
    assert got == sorted(set(got)) and 18 <= len(got) <= 21 and got[-1] < 10_000
    names = {c["name"] for f in timeline["frames"] for c in f["data"]["concepts"]}
    assert names == {"sfw", "nsfw"}


def test_injected_faults_give_exactly_the_fault_free_timeline(
        serve: Callable[..., Server], noisy_video: Path, tmp_path: Path) -> None:
    """30% transient faults: more requests, the very same frames and values."""
    clean = run(noisy_video, tmp_path / "clean", backend(serve()))
    faulty_server = serve(fault_rate=0.3, fault_seed=3)
    sleeps: list[float] = []
    faulty = run(noisy_video, tmp_path / "faulty",
                 backend(faulty_server, sleeps=sleeps, retry=RetryConfig(attempts=12)))
    assert faulty["frames"] == clean["frames"]
    log = requests(faulty_server)
    injected = [r for r in log if r["fault"]]
    assert injected and len(sleeps) == len(injected)
    assert sum(c["attempts"] for c in faulty["chunks"]) == len(log)


def test_wrong_key_stops_the_run_after_one_request_without_showing_the_key(
        serve: Callable[..., Server], noisy_video: Path, tmp_path: Path) -> None:
    """Exit 2, one request for 4 chunks in flight, the problem named, the key nowhere."""
    server = serve()
    wrong = "wrong-key-7e3b2c1d9f"
    out = tmp_path / "out"
    env = {**os.environ, "CLARIFAI_PAT": wrong}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "-vv", "run", str(noisy_video), "--out", str(out),
         "--backend", "clarifai", "--api-base", f"127.0.0.1:{server.port}", "--insecure",
         "--max-bytes", "200000", "--concurrency", "4", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "CONN_KEY_INVALID" in done.stderr and "CLARIFAI_PAT" in done.stderr
    assert len(requests(server)) == 1
    assert wrong not in done.stderr + done.stdout
    assert wrong not in (out / "summary.json").read_text()


def test_missing_key_is_a_usage_error_that_says_how_to_set_it(
        noisy_video: Path, tmp_path: Path) -> None:
    """No CLARIFAI_PAT: exit 2 before anything is sent."""
    env = {k: v for k, v in os.environ.items() if k != "CLARIFAI_PAT"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(noisy_video), "--out", str(tmp_path),
         "--backend", "clarifai", "--api-base", "127.0.0.1:9", "--insecure", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "set the CLARIFAI_PAT environment variable" in done.stderr


def test_concurrent_first_requests_with_a_wrong_key_cost_one_request(
        serve: Callable[..., Server], noisy_video: Path) -> None:
    """Four threads predict at once with a bad key: one request, four AuthErrors."""
    server = serve()
    client = backend(server, key="not-the-key")
    errors: list[BaseException] = []

    def predict() -> None:
        try:
            client.predict(*whole(noisy_video), 1000)
        except AuthError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=predict) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and len(requests(server)) == 1 and client.requests == 1
    assert "not-the-key" not in str(errors[0]) and "not-the-key" not in repr(client)


def test_over_limit_answer_resplits_the_chunk(serve: Callable[..., Server], noisy_video: Path,
                                              tmp_path: Path) -> None:
    """The server takes 200 kB, the client cuts 400 kB: refused chunks are cut smaller."""
    server = serve(limits=InputLimits(max_bytes=200_000))
    timeline = run(noisy_video, tmp_path / "out", backend(server), max_bytes=400_000)
    log = requests(server)
    refused = [r for r in log if r["status"] == 31105]
    assert refused and all(r["size_bytes"] > 200_000 for r in refused)
    assert all(r["size_bytes"] <= 200_000 for r in log if r["status"] == 10000)
    assert any(c["attempts"] > 1 for c in timeline["chunks"])
    got = times(timeline)
    assert got == sorted(set(got)) and 18 <= len(got) <= 21


def test_throttling_waits_longer_than_other_transient_faults(
        serve: Callable[..., Server], noisy_video: Path) -> None:
    """CONN_THROTTLED backs off from a floor; UNAVAILABLE only within the jitter window.
    (Throttles end by their own time, 20 s here, which the fourth floor passes.)"""
    config = RetryConfig(attempts=4, throttle_seconds=20)
    waits: dict[str, list[float]] = {}
    for fault in ("11005", "UNAVAILABLE"):
        server = serve(fault_rate=1.0, faults=(Fault.parse(fault),))
        waits[fault] = []
        with pytest.raises(TransientBackendError) as caught:
            backend(server, sleeps=waits[fault], retry=config).predict(*whole(noisy_video), 1000)
        assert caught.value.attempts == 4 and len(requests(server)) == 4
    for n, (throttled, other) in enumerate(zip(waits["11005"], waits["UNAVAILABLE"],
                                               strict=True), start=1):
        assert other <= config.base * 2 ** (n - 1) < config.throttle_floor * 2 ** (n - 1)
        assert throttled >= config.throttle_floor * 2 ** (n - 1)


def test_a_failed_output_under_a_successful_response_is_a_failure(
        serve: Callable[..., Server], noisy_video: Path) -> None:
    """Top-level SUCCESS but outputs[0].status MODEL_BUSY: retried, never taken as 0 frames."""
    server = serve(fault_rate=1.0, faults=(Fault.parse("output:21354"),))
    with pytest.raises(TransientBackendError, match="MODEL_BUSY_PLEASE_RETRY"):
        backend(server, retry=RetryConfig(attempts=2)).predict(*whole(noisy_video), 1000)
    assert len(requests(server)) == 2


def test_a_chunk_that_keeps_timing_out_is_resplit(serve: Callable[..., Server],
                                                  noisy_video: Path) -> None:
    """Every attempt past its deadline: OverLimitError, so the runner cuts it smaller."""
    server = serve(latency_ms=3000)
    client = backend(server, retry=RetryConfig(attempts=2),
                     deadline=Deadline(base=0.3, per_video_second=0))
    with pytest.raises(OverLimitError, match="timed out") as caught:
        client.predict(*whole(noisy_video), 1000)
    assert caught.value.attempts == 2


def test_bad_input_fails_with_clarifais_description(serve: Callable[..., Server],
                                                    tmp_path: Path) -> None:
    """Not a video: RejectedInputError carrying the server's words, after one request."""
    server = serve()
    junk = tmp_path / "junk.mp4"
    junk.write_text("this is not a video\n" * 100)
    chunk = Chunk(0, str(junk), Fraction(0), Fraction(1), junk.stat().st_size, 1)
    with pytest.raises(RejectedInputError, match="INPUT_VIDEO_UNSUPPORTED_FORMAT.*not a readable"):
        backend(server).predict(chunk, VideoFile(chunk.path), 1000)
    assert len(requests(server)) == 1


def test_unknown_model_stops_the_run(serve: Callable[..., Server], noisy_video: Path) -> None:
    """MODEL_DOES_NOT_EXIST can never succeed for any chunk: it stops the run like auth."""
    server = serve()
    client = ClarifaiBackend("general", key=KEY, api_base=f"127.0.0.1:{server.port}",
                             insecure=True)
    with pytest.raises(AuthError, match="MODEL_DOES_NOT_EXIST"):
        client.predict(*whole(noisy_video), 1000)


def test_the_key_never_reaches_logs_or_reprs(serve: Callable[..., Server], noisy_video: Path,
                                            tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """With faults, retries and debug logging, the key shows up nowhere."""
    server = serve(fault_rate=0.5, fault_seed=1)
    client = backend(server, retry=RetryConfig(attempts=12))
    with caplog.at_level(logging.DEBUG):
        timeline = run(noisy_video, tmp_path / "out", client)
    assert "next try in" in caplog.text
    assert KEY not in caplog.text and KEY not in repr(client) and KEY not in str(client)
    assert KEY not in json.dumps(timeline)
    assert KEY not in Path(server.config.request_log or "").read_text()


def test_requests_per_second_stay_under_the_rate_limit(noisy_video: Path,
                                                       tmp_path: Path) -> None:
    """--rate-limit 2 over 4+ chunks and 4 threads: no second of the server's log holds 3.
    serve runs in its own process, so that its log times the arrivals, not the moments this
    process's threads got the interpreter."""
    log = tmp_path / "requests.jsonl"
    server, port = start_serve("--api-key", KEY, "--request-log", str(log))
    try:
        client = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{port}",
                                 insecure=True, rate_limit=2)
        run(noisy_video, tmp_path / "out", client, rate_limit=2, concurrency=4)
    finally:
        stop_process(server, 10)
    arrivals = sorted(json.loads(line)["time"] for line in log.read_text().splitlines())
    assert len(arrivals) >= 4
    assert max(sum(1 for u in arrivals if t <= u < t + 1) for t in arrivals) <= 2


def test_tls_channel_to_a_plain_server_is_an_error_not_a_hang(
        serve: Callable[..., Server], noisy_video: Path) -> None:
    """Without --insecure the channel speaks TLS: a plain-text server cannot answer it."""
    server = serve()
    client = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{server.port}",
                             sleep=lambda s: None, retry=RetryConfig(attempts=2),
                             deadline=Deadline(base=5, per_video_second=0))
    with pytest.raises(TransientBackendError, match="UNAVAILABLE") as caught:
        client.predict(*whole(noisy_video), 1000)
    assert caught.value.code == "UNAVAILABLE" and caught.value.attempts == 2


RETRYABLE = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "10030", "11005", "21351", "21352", "21354",
             "21355", "40030", "40031", "40032", "98004", "99009", "output:21354"]


@pytest.mark.parametrize("fault", RETRYABLE)
def test_every_retryable_answer_is_retried_and_then_answered(
        serve: Callable[..., Server], noisy_video: Path, fault: str) -> None:
    """Each code docs/clarifai-api.md lists as retried (gRPC or Clarifai, top-level or per
    output) fails the first request only: the chunk is answered on the second, two requests."""
    server = serve(faults=(Fault.parse(fault),), fault_at=frozenset({1}))
    result = backend(server).predict(*whole(noisy_video), 1000)
    assert result.attempts == 2 and len(result.frames) == 10
    assert [r["fault"] is not None for r in requests(server)] == [True, False]
