"""`--rate-limit auto`: a rate learned from the API's answers (throttles cut it, successes raise
it), serve's per-key limit counted on arrival, throttles with their own retry budget, the
learned rate remembered per key (never the key), and chunks in flight by Little's law."""

from __future__ import annotations

import json
import math
import random
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
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.backends.adaptive import Controller, Pacer, Ticket, Tuning, stated_limit
from pipeline.backends.clarifai import ClarifaiBackend
from pipeline.backends.rate_memory import FILE, RateMemory, Remembered, digest
from pipeline.backends.ratecontrol import AdaptiveRate, InFlightGate, little
from pipeline.backends.retry import RetryConfig, policy
from pipeline.batch.pool import GatedPool
from pipeline.batch.runner import Runner
from pipeline.errors import TransientBackendError
from pipeline.serve.server import Server
from pipeline.settings import Settings
from pipeline.types import Chunk, VideoFile

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


@pytest.fixture(scope="session")
def twenty_second_chunks(media_dir: Path) -> Path:
    """A folder of three 20 s videos of 1 s keyframe intervals: 60 chunks at --max-seconds 1."""
    folder = media_dir / "rate-videos-20"
    folder.mkdir(exist_ok=True)
    for hue in (30, 150, 270):
        path = folder / f"v{hue}.mp4"
        if not path.exists():
            media.testsrc(path, seconds=20, size="160x120", rate=10, gop=10,
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


def binding(controller: Controller, now: float) -> Ticket:
    """A ticket for a start right after the previous one: the rate is what holds it back."""
    return controller.ticket(now, now - controller.interval())


# -- the controller ----------------------------------------------------------------------------
def test_a_throttle_cuts_the_rate_once_for_the_requests_sent_before_the_cut() -> None:
    """Throttles of requests sent at the rate that was too much cut it once; a throttle of a
    request sent after that cut cuts again."""
    c = Controller(TUNING, start=8.0)
    sent = [binding(c, 10.0 + i / 8) for i in range(4)]
    assert c.throttled(sent[0], now=11.0)
    after_first = c.rate
    assert after_first == pytest.approx(8.0 * TUNING.cuts[0])
    assert not any(c.throttled(t, now=11.1) for t in sent[1:])
    assert c.rate == after_first and c.throttles == 4
    assert c.throttled(binding(c, 11.5), now=11.6)
    assert c.rate < after_first


def test_successes_raise_the_rate_only_while_it_holds_requests_back() -> None:
    """Before any throttle, a second of rate-bound successes raises the rate by `grow`; a
    success whose start found the pacer idle says nothing of a higher rate."""
    c = Controller(TUNING, start=4.0)
    idle = c.ticket(100.0, 90.0)
    c.succeeded(idle)
    assert c.rate == 4.0 and not idle.binding
    now = 100.0
    while now < 101.0:  # a second of successes, each start an interval after the last
        c.succeeded(binding(c, now))
        now += c.interval()
    assert c.rate == pytest.approx(4.0 * TUNING.grow, rel=0.05)


def test_other_failures_and_latency_never_cut_the_rate() -> None:
    """A request that failed otherwise (unavailable, busy) or took minutes leaves the rate."""
    rate = AdaptiveRate(Controller(TUNING, start=6.0), sleep=lambda s: None)
    for _ in range(5):
        ticket = rate.start()
        rate.answered(ticket, ok=False, throttled=False, stated=None, seconds=120.0)
    assert rate.controller.rate == 6.0 and rate.report().throttled == 0


def test_a_stated_limit_caps_the_rate_under_it() -> None:
    """"exceeded limit of 6 requests per second": the rate never passes 90% of 6 again, the
    cap being an upper bound only (the key is shared): throttles still cut below it."""
    assert stated_limit("CONN_THROTTLED (11005): exceeded limit of 6 requests per second") == 6
    assert stated_limit("CONN_THROTTLED (11005): slow down") is None
    c = Controller(TUNING, start=9.0)
    c.throttled(binding(c, 1.0), now=1.0, stated=6.0)
    for i in range(400):
        c.succeeded(binding(c, 2.0 + i / 5))
    assert c.rate == pytest.approx(TUNING.stated_share * 6)
    c.throttled(binding(c, 90.0), now=90.0, stated=6.0)
    assert c.rate < TUNING.stated_share * 6


def test_after_a_throttle_the_rate_settles_under_it_before_probing_above() -> None:
    """Throttled twice at 10/s (no limit stated): the rate climbs back to 85% of it within
    seconds of successes, and stays under 10 for a while (probing slowly, not in bursts)."""
    c = Controller(TUNING, start=10.0)
    c.throttled(Ticket(0.0, 10.0, True), now=0.0)
    c.throttled(Ticket(0.5, 10.0, True), now=0.5)  # a second cut in a row: a limit found
    assert c.rate <= 0.5 * 10.0
    now, trace = 1.0, []
    while now < 13.0:
        c.succeeded(binding(c, now))
        trace.append((now, c.rate))
        now += c.interval()
    assert min(t for t, r in trace if r >= 8.5) < 8.0
    assert max(r for t, r in trace) < 10.0


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 0.5), st.booleans()), min_size=2, max_size=60))
def test_the_pacer_spaces_starts_at_least_an_interval_apart(
        steps: list[tuple[float, bool]]) -> None:
    """Whatever the answers do to the rate, two starts are never closer than the interval at
    the time the second was taken."""
    c = Controller(TUNING, start=5.0)
    pacer = Pacer(c)
    now, last = 0.0, None
    for pause, throttle in steps:
        now += pause
        got = pacer.take(now)
        while not isinstance(got, Ticket):
            now += got
            got = pacer.take(now)
        if last is not None:
            assert now - last >= c.interval() - 1e-9
        last = now
        if throttle:
            c.throttled(got, now, stated=7.0)
        else:
            c.succeeded(got)


# -- throttles have their own retry budget -----------------------------------------------------
def throttle() -> TransientBackendError:
    return TransientBackendError("CONN_THROTTLED (11005): exceeded limit of 6 requests per "
                                 "second", code=11005, throttled=True)


def calls_failing(errors: list[Exception]) -> Callable[[], str]:
    def call() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"
    return call


def test_throttles_do_not_use_up_a_chunks_attempts() -> None:
    """Ten throttles and two unavailable answers, with 3 attempts: the call succeeds (today's
    policy failed it at the third throttle)."""
    errors: list[Exception] = [throttle() for _ in range(10)]
    errors[4:4] = [TransientBackendError("UNAVAILABLE", code="UNAVAILABLE")] * 2
    waits: list[float] = []
    assert policy(RetryConfig(attempts=3), sleep=waits.append)(calls_failing(errors)) == "ok"
    assert len(waits) == 12


def test_throttled_retries_end_after_their_own_time() -> None:
    """Throttled for ever: retried until the next wait would pass throttle_seconds."""
    errors: list[Exception] = [throttle() for _ in range(100)]
    waits: list[float] = []
    with pytest.raises(TransientBackendError):
        policy(RetryConfig(attempts=3, throttle_seconds=20), sleep=waits.append,
               rng=random.Random(0))(calls_failing(errors))
    assert sum(waits) < 20 <= sum(waits) + 16  # the floor doubles: the fourth wait is >= 16
    assert len(waits) >= 3


def test_paced_throttles_wait_only_a_jitter_window() -> None:
    """With a learned rate the pacer spaces the retries: a throttle waits within `base`."""
    waits: list[float] = []
    policy(RetryConfig(paced=True), sleep=waits.append)(calls_failing(
        [throttle() for _ in range(8)]))
    assert len(waits) == 8 and all(0 <= w <= RetryConfig().base for w in waits)


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


# -- chunks in flight by Little's law ----------------------------------------------------------
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


def test_chunks_in_flight_follow_the_rate_and_the_latency() -> None:
    """Little's law with headroom: 10/s at 2 s needs 31 in flight; bounded by the pool."""
    assert little(10, 2.0, 64) == math.ceil(10 * 2.0 * 1.5) + 1 == 31
    assert little(10, 2.0, 16) == 16 and little(0.2, 0.1, 16) == 2
    assert Settings.from_options(backend="clarifai").api.workers == 32
    assert Settings.from_options(backend="clarifai", rate_limit=10).api.workers == 4
    assert Settings.from_options(backend="clarifai", concurrency=6).api.workers == 6


def test_the_pool_holds_tasks_to_the_gate_and_follows_it_when_it_grows() -> None:
    """A pool of 8 threads behind a gate of 2: never more than 2 tasks inside; resized to 5,
    up to 5."""
    gate = InFlightGate(2)
    inside, most = [0], [0]
    lock = threading.Lock()

    def task() -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1

    with GatedPool(8, gate) as pool:
        list(futures.as_completed([pool.submit(task) for _ in range(12)]))
        assert most[0] == 2
        gate.resize(5)
        most[0] = 0
        list(futures.as_completed([pool.submit(task) for _ in range(20)]))
    assert 2 < most[0] <= 5


# -- settings ----------------------------------------------------------------------------------
def test_rate_limit_takes_auto_or_a_number() -> None:
    """auto is the default; a number is a fixed limit; anything else, or a fixed limit above
    --rate-limit-max, is a configuration error (exit 2)."""
    from pipeline._cli import options
    from pipeline.errors import ConfigError
    assert Settings.from_options(backend="clarifai").api.adaptive
    assert not Settings.from_options(backend="clarifai", rate_limit=5.0).api.adaptive
    assert options.auto_or_number(" AUTO", "--rate-limit") == "auto"
    with pytest.raises(ConfigError, match="--rate-limit takes a number"):
        options.auto_or_number("fast", "--rate-limit")
    with pytest.raises(ConfigError, match="above --rate-limit-max"):
        Settings.from_options(rate_limit=8.0, rate_limit_max=4.0)
    done = run_cli("run", "x.mp4", "--out", "/tmp/never", "--rate-limit", "fast")
    assert done.returncode == 2 and "--rate-limit" in done.stderr


def test_the_cache_folder_is_the_variable_then_xdg_then_home() -> None:
    """VIDEO_PIPELINE_CACHE_DIR, else $XDG_CACHE_HOME/video-pipeline, else
    ~/.cache/video-pipeline; read by the command line only."""
    import argparse

    from pipeline._cli import options
    args = argparse.Namespace()
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/var/cache/u"}
    assert options.settings(args, env, run=True).api.cache_dir == "/var/cache/u/video-pipeline"
    assert options.settings(args, {"HOME": "/home/u"}, run=True).api.cache_dir == \
        "/home/u/.cache/video-pipeline"
    assert options.settings(args, {**env, "VIDEO_PIPELINE_CACHE_DIR": "/c"},
                            run=True).api.cache_dir == "/c"
    assert Settings.from_options().api.cache_dir is None
