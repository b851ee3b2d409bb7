"""`--rate-limit auto` against real servers: serve's per-key limit counted on arrival, the
client finding a limit it is not told and holding it, throttles that never fail a video, the
learned rate reused by the next run, two clients on one key, the pool following the rate, and
a server's retry pushback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import media
import pytest
from batch_support import run_cli, start_serve, stop_process, summary
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from pipeline.backends.adaptive import Tuning
from pipeline.backends.clarifai import ClarifaiBackend
from pipeline.backends.rate_memory import FILE, RateMemory, Remembered, digest
from pipeline.backends.retry import RetryConfig
from pipeline.batch.runner import Runner
from pipeline.serve.server import Server
from pipeline.settings import Settings
from pipeline.types import Chunk, VideoFile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "rate-test-key-5b0e7d2a91"
SECOND_MODEL = "e9576d86d2004ed1a38ba0cf39ecb4b1"  # the nsfw model's older id: a second client
TUNING = Tuning()


# -- media and helpers -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def second_chunks(media_dir: Path) -> Path:
    """A folder of two 12 s videos of 1 s keyframe intervals: 24 chunks at --max-seconds 1."""
    folder = media_dir / "rate-videos"
    folder.mkdir(exist_ok=True)
    for hue in (0, 120):
        path = folder / f"v{hue}.mp4"
        if not path.exists():
            media.testsrc(path, seconds=12, size="160x120", rate=10, gop=10,
                    extra_vf=f"hue=h={hue}")
    return folder


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Callable[..., tuple[int, Path]]]:
    """`serve --key-rate-limit R` in its own process (its log stamps arrivals, not the moments
    this process's threads get the interpreter); returns its port and request log."""
    started: list[Any] = []

    def start(limit: int, *extra: str) -> tuple[int, Path]:
        log = tmp_path / f"requests-{len(started)}.jsonl"
        proc, port = start_serve("--api-key", KEY, "--request-log", str(log), "--workers", "8",
                                 "--key-rate-limit", str(limit), *extra)
        started.append(proc)
        return port, log

    yield start
    for proc in started:
        stop_process(proc, 10)


def logged(log: Path) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries if e["method"] == "PostModelOutputs"]


def auto_run(folder: Path, out: Path, port: int, cache: Path, *extra: str,
             concurrency: str | None = "8", timeout: float = 240) -> dict[str, Any]:
    """The CLI run of `folder` with --rate-limit auto (the default) against `port`."""
    pool = ("--concurrency", concurrency) if concurrency else ()
    done = run_cli("run", str(folder), "--out", str(out), "--backend", "clarifai", "--insecure",
                   "--api-base", f"127.0.0.1:{port}", "--max-seconds", "1", "--no-progress",
                   *pool, *extra,
                   env={"CLARIFAI_PAT": KEY, "VIDEO_PIPELINE_CACHE_DIR": str(cache)},
                   timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return summary(out)


class _PushingBack(service_pb2_grpc.V2Servicer):
    """Throttles its first answer with gRPC's retry pushback (1.5 s), then answers."""

    def __init__(self) -> None:
        self.calls = 0

    def PostModelOutputs(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.calls += 1
        if self.calls == 1:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", "1500"),))
            return service_pb2.MultiOutputResponse(status=status_pb2.Status(
                code=status_code_pb2.CONN_THROTTLED, description="slow down"))
        ok = status_pb2.Status(code=status_code_pb2.SUCCESS)
        frame = resources_pb2.Frame(frame_info=resources_pb2.FrameInfo(time=0),
                                    data=resources_pb2.Data(concepts=[resources_pb2.Concept(
                                        id="sfw", name="sfw", value=0.9)]))
        return service_pb2.MultiOutputResponse(status=ok, outputs=[resources_pb2.Output(
            status=ok, data=resources_pb2.Data(frames=[frame]))])


def test_the_servers_pushback_is_honoured(tmp_path: Path) -> None:
    """A throttle carrying grpc-retry-pushback-ms 1500: the retry waits at least 1.5 s."""
    servicer = _PushingBack()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    service_pb2_grpc.add_V2Servicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        waits: list[float] = []
        client = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{port}", insecure=True,
                                 sleep=waits.append, retry=RetryConfig(paced=True))
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"\0" * 100)
        result = client.predict(Chunk(0, str(clip), Fraction(0), Fraction(1), 100, 10),
                                VideoFile(str(clip)), 1000)
        client.close()
    finally:
        server.stop(0)
    assert result.attempts == 2 and servicer.calls == 2
    assert waits and waits[-1] >= 1.5


# -- serve's per-key limit ---------------------------------------------------------------------
def post(port: int, key: str, data: bytes) -> grpc.Future:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return service_pb2_grpc.V2Stub(channel).PostModelOutputs.future(
        service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[resources_pb2.Input(
            data=resources_pb2.Data(video=resources_pb2.Video(base64=data)))]),
        metadata=(("authorization", f"Key {key}"),), timeout=60)


def test_key_rate_limit_counts_arrivals_before_the_queue(serve: Callable[..., Server],
                                                          small_video: Path) -> None:
    """One worker, 1.5 s an answer, a limit of 3: six requests at once are six arrivals in a
    second, so three are throttled, at once, while the other three wait for the worker in
    turn (counted when a worker took them, none would be: they reach it 1.5 s apart)."""
    server = serve(workers=1, latency_ms=1500, key_rate_limit=3, api_key=None)
    data = small_video.read_bytes()
    began = time.monotonic()
    calls = [post(server.port, KEY, data) for _ in range(6)]
    answers = []
    for call in futures.as_completed([_as_future(c) for c in calls]):
        answers.append((time.monotonic() - began, call.result().status))
    codes = [s.code for _, s in answers]
    assert codes.count(status_code_pb2.CONN_THROTTLED) == 3
    assert codes.count(status_code_pb2.SUCCESS) == 3
    throttled_at = [t for t, s in answers if s.code == status_code_pb2.CONN_THROTTLED]
    served_at = [t for t, s in answers if s.code == status_code_pb2.SUCCESS]
    assert max(throttled_at) < 1.5 <= min(served_at) and max(served_at) >= 4.5
    assert {s.description for _, s in answers if s.code == status_code_pb2.CONN_THROTTLED} == {
        "exceeded limit of 3 requests per second"}


def _as_future(call: grpc.Future) -> futures.Future[Any]:
    done: futures.Future[Any] = futures.Future()
    call.add_done_callback(lambda c: done.set_result(c.result()))
    return done


def test_each_key_has_its_own_window_and_throttles_are_logged(serve: Callable[..., Server],
                                                              png: bytes) -> None:
    """Limit 2: a third request of one key in the second is throttled, another key's first is
    not; each throttle is one line of the request log, flagged, never showing the key."""
    server = serve(key_rate_limit=2, api_key=None)
    stub = service_pb2_grpc.V2Stub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    request = service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[resources_pb2.Input(
        data=resources_pb2.Data(image=resources_pb2.Image(base64=png)))])
    codes = [stub.PostModelOutputs(request, metadata=(("authorization", f"Key {k}"),)).status.code
             for k in ("one", "one", "one", "two")]
    assert codes == [10000, 10000, 11005, 10000]
    path = Path(str(server.config.request_log))
    log = logged(path)
    assert [e["throttled"] for e in log] == [False, False, True, False]
    assert log[2]["status"] == 11005 and log[2]["kind"] == "image-bytes"
    assert "Key one" not in path.read_text()


def test_serve_refuses_a_key_rate_limit_below_one() -> None:
    """--key-rate-limit 0: one line, exit 2."""
    done = run_cli("serve", "--port", "0", "--key-rate-limit", "0", timeout=30)
    assert done.returncode == 2 and "--key-rate-limit" in done.stderr


# -- the client against serve's limit ----------------------------------------------------------
def test_auto_finds_a_limit_it_is_not_told_and_holds_it(
        second_chunks: Path, tmp_path: Path, limited: Callable[..., tuple[int, Path]]) -> None:
    """24 one-second chunks against a limit of 4 the client is not told: every video done, few
    requests throttled, and summary.json reports the rate learned, just under the limit."""
    port, log = limited(4)
    found = auto_run(second_chunks, tmp_path / "out", port, tmp_path / "cache")
    assert found["counts"]["done"] == 2
    entries = logged(log)
    throttled = sum(e["throttled"] for e in entries)
    rate = found["rate"]
    assert rate["mode"] == "auto" and rate["requests"] == len(entries)
    assert rate["throttled"] == throttled <= 0.1 * len(entries)
    assert rate["stated_limit"] == 4 and 0.6 * 4 <= rate["learned"] <= 0.9 * 4


def test_no_video_fails_of_throttling(second_chunks: Path, tmp_path: Path,
                                      limited: Callable[..., tuple[int, Path]]) -> None:
    """A fixed rate of 20 against a limit of 2, with 2 attempts a chunk: most requests are
    throttled, and every chunk is done (throttles do not use up its attempts)."""
    port, log = limited(2)
    client = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{port}", insecure=True,
                             rate_limit=20, retry=RetryConfig(attempts=2, base=0.05,
                                                              throttle_floor=0.1))
    settings = Settings.from_options(backend="clarifai", insecure=True, max_seconds=1,
                                     concurrency=8, rate_limit=20)
    outcomes = Runner(settings, str(tmp_path / "out"), backend=client).run(
        [str(second_chunks / "v0.mp4")])
    assert [o.status for o in outcomes] == ["done"]
    entries = logged(log)
    assert sum(e["throttled"] for e in entries) > len(entries) // 2


def test_the_learned_rate_is_reused_and_never_stored_with_the_key(
        second_chunks: Path, tmp_path: Path, limited: Callable[..., tuple[int, Path]]) -> None:
    """The second run starts where the first settled; the cache file holds a salted digest
    and the rate, never the key; a broken cache file is ignored, then replaced."""
    port, _ = limited(4)
    cache = tmp_path / "cache"
    first = auto_run(second_chunks / "v0.mp4", tmp_path / "one", port, cache)["rate"]
    stored = (cache / FILE).read_text()
    assert KEY not in stored and KEY.encode().hex() not in stored
    memory = RateMemory(cache)
    mine = digest(memory.salt, f"127.0.0.1:{port}", KEY)
    assert memory.recall(mine) == Remembered(first["learned"], 4.0)
    assert list(json.loads(stored)["keys"]) == [mine]
    second = auto_run(second_chunks / "v120.mp4", tmp_path / "two", port, cache)["rate"]
    assert second["start"] == first["learned"] != TUNING.start
    (cache / FILE).write_text("{not json")
    third = auto_run(second_chunks / "v0.mp4", tmp_path / "three", port, cache)["rate"]
    assert third["start"] == TUNING.start
    assert json.loads((cache / FILE).read_text())["keys"]


def test_rate_limit_max_caps_the_learned_rate(second_chunks: Path, tmp_path: Path,
                                              limited: Callable[..., tuple[int, Path]]) -> None:
    """--rate-limit-max 2 against a limit of 50: nothing throttled, 2 learned, and the
    requests arrive at 2 a second (starts are spaced half a second apart)."""
    port, log = limited(50)
    found = auto_run(second_chunks / "v0.mp4", tmp_path / "out", port, tmp_path / "cache",
                     "--rate-limit-max", "2")["rate"]
    arrivals = [e["time"] for e in logged(log)]
    assert found["throttled"] == 0 and found["learned"] == 2.0
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 2 * 1.05


def test_a_second_client_on_the_key_makes_both_slow_down(
        twenty_second_chunks: Path, tmp_path: Path,
        limited: Callable[..., tuple[int, Path]]) -> None:
    """Two runs of 60 chunks with one key against a limit of 4, the second starting once the
    first is under way: while both run, each is accepted at well under the limit and the two
    together at most the limit, with few requests throttled."""
    port, log = limited(4)
    results: list[dict[str, Any]] = []
    running = threading.Thread(target=lambda: results.append(auto_run(
        twenty_second_chunks, tmp_path / "one", port, tmp_path / "cache-one")))
    running.start()
    deadline = time.monotonic() + 120
    while (not log.exists() or len(log.read_text().splitlines()) < 3) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    results.append(auto_run(twenty_second_chunks, tmp_path / "two", port,
                            tmp_path / "cache-two", "--model", SECOND_MODEL))
    running.join(timeout=240)
    assert len(results) == 2 and all(r["counts"]["done"] == 3 for r in results)
    entries = logged(log)
    assert sum(e["throttled"] for e in entries) <= 0.1 * len(entries)
    second = [e["time"] for e in entries if e["model"] == SECOND_MODEL and not e["throttled"]]
    first = [e["time"] for e in entries if e["model"] != SECOND_MODEL and not e["throttled"]]
    lo, hi = second[0] + 3, min(first[-1], second[-1])
    assert hi - lo >= 5, "the runs hardly overlapped"
    rates = [sum(1 for t in mine if lo <= t <= hi) / (hi - lo) for mine in (first, second)]
    assert all(r < 0.75 * 4 for r in rates) and sum(rates) <= 4 * 1.05, rates


def test_without_concurrency_the_rate_not_the_pool_is_the_limit(
        second_chunks: Path, tmp_path: Path, limited: Callable[..., tuple[int, Path]]) -> None:
    """1.5 s an answer and a limit of 6: without --concurrency the chunks in flight grow with
    the rate (4 in flight would allow 2.5 a second), so the requests arrive at more than 4 a
    second, few throttled."""
    port, log = limited(6, "--latency-ms", "1500")
    found = auto_run(second_chunks, tmp_path / "out", port, tmp_path / "cache",
                     concurrency=None)
    assert found["counts"]["done"] == 2
    accepted = [e["time"] for e in logged(log) if not e["throttled"]]
    middle = accepted[len(accepted) // 4: -len(accepted) // 4]
    assert (len(middle) - 1) / (middle[-1] - middle[0]) > 4.0
    assert found["rate"]["throttled"] <= 0.1 * found["rate"]["requests"]


def test_a_rate_limit_that_is_neither_auto_nor_a_number_is_exit_2() -> None:
    """--rate-limit fast: one line naming the flag, exit 2."""
    done = run_cli("run", "x.mp4", "--out", "/tmp/never", "--rate-limit", "fast")
    assert done.returncode == 2 and "--rate-limit takes auto or a number" in done.stderr
