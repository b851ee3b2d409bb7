"""`--rate-limit auto`, in process: the controller that learns a rate from the API's answers
(throttles cut it, successes raise it), its pacer, the retry budget of throttles, the memory
of learned rates (never the key), and chunks in flight by Little's law. Against real servers:
test_rate_serve.py and test_rate_dask.py."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.backends.adaptive import Controller, Pacer, Ticket, Tuning, stated_limit
from pipeline.backends.rate_memory import FILE, RateMemory, Remembered, digest
from pipeline.backends.ratecontrol import AdaptiveRate, InFlightGate, controller_for, little
from pipeline.backends.retry import RetryConfig, policy
from pipeline.batch.pool import GatedPool
from pipeline.errors import TransientBackendError
from pipeline.settings import Settings

pytestmark = pytest.mark.pure

KEY = "rate-test-key-5b0e7d2a91"
TUNING = Tuning()


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


def test_the_newest_stated_limit_wins_so_a_raised_plan_is_found() -> None:
    """A throttle stating a higher limit than an earlier one lifts the cap; a run that starts
    from a remembered rate is not capped by the limit stated then (the plan may have grown)."""
    c = Controller(TUNING, start=5.0)
    c.throttled(binding(c, 1.0), now=1.0, stated=6.0)
    assert c.top() == pytest.approx(TUNING.stated_share * 6)
    c.throttled(binding(c, 2.0), now=2.0, stated=100.0)
    assert c.top() == pytest.approx(TUNING.stated_share * 100)
    warm = controller_for(Remembered(5.4, stated=6.0), most=None)
    now = 10.0
    while now < 200.0:  # three minutes of rate-bound successes, never throttled
        warm.succeeded(binding(warm, now))
        now += warm.interval()
    assert warm.rate > 6.0


def test_rate_limit_max_holds_even_below_the_floor() -> None:
    """--rate-limit-max 0.1 is honoured: the controller's floor never lifts a rate above it."""
    c = Controller(TUNING, start=5.0, most=0.1)
    assert c.rate == pytest.approx(0.1)
    c.throttled(binding(c, 1.0), now=1.0)
    assert c.rate <= 0.1


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


# -- the memory of learned rates ----------------------------------------------------------------
def test_learned_rates_are_filed_under_a_salted_digest_never_the_key(tmp_path: Path) -> None:
    """rates.json holds a salt, and per key an HMAC of the address and the key with the rate:
    the key, its hex, or its digest without the salt appear nowhere; another run reads it."""
    import hashlib
    memory = RateMemory(tmp_path)
    mine = digest(memory.salt, "api.clarifai.com", KEY)
    memory.remember(mine, Remembered(5.4, 6.0))
    text = (tmp_path / FILE).read_text()
    assert KEY not in text and KEY.encode().hex() not in text
    assert hashlib.sha256(KEY.encode()).hexdigest() not in text
    again = RateMemory(tmp_path)
    assert again.recall(digest(again.salt, None, KEY)) == Remembered(5.4, 6.0)
    assert again.recall(digest(again.salt, "127.0.0.1:50051", KEY)) is None
    assert json.loads(text)["keys"] == {mine: {"rate": 5.4, "stated": 6.0}}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": 1, "salt": "zz", "keys": {}}',
                                     '{"format": 1, "salt": "00", "keys": []}'])
def test_a_broken_memory_is_ignored_then_replaced(tmp_path: Path, content: str) -> None:
    """A file that does not parse, or is not what the memory writes: nothing recalled, and the
    next learned rate replaces it."""
    (tmp_path / FILE).write_text(content)
    memory = RateMemory(tmp_path)
    assert memory.everything() == {}
    memory.remember(digest(memory.salt, None, KEY), Remembered(3.0))
    assert RateMemory(tmp_path).everything() == {digest(memory.salt, None, KEY): Remembered(3.0)}


@pytest.mark.parametrize("entry", ['{"rate": Infinity}', '{"rate": 1e999}', '{"rate": NaN}',
                                   '{"rate": 0}', '{"rate": -3}'])
def test_a_remembered_rate_that_is_not_a_positive_number_is_not_recalled(
        tmp_path: Path, entry: str) -> None:
    """A hand-edited or damaged entry never starts a run (an infinite rate would crash it):
    it is not recalled; a stated limit that is not a positive number is dropped."""
    memory = RateMemory(tmp_path)
    mine = digest(memory.salt, None, KEY)
    (tmp_path / FILE).write_text(
        f'{{"format": 1, "salt": "{memory.salt}", "keys": {{"{mine}": {entry}}}}}')
    assert RateMemory(tmp_path).recall(mine) is None
    (tmp_path / FILE).write_text(f'{{"format": 1, "salt": "{memory.salt}", "keys": '
                                 f'{{"{mine}": {{"rate": 4.0, "stated": NaN}}}}}}')
    assert RateMemory(tmp_path).recall(mine) == Remembered(4.0, None)


def test_a_memory_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """The cache folder is a file: the rate is not remembered, the run goes on."""
    (tmp_path / "cache").write_text("a file")
    RateMemory(tmp_path / "cache").remember("d", Remembered(3.0))


# -- chunks in flight by Little's law ----------------------------------------------------------
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
    --rate-limit-max, is a configuration error."""
    from pipeline._cli import options
    from pipeline.errors import ConfigError
    assert Settings.from_options(backend="clarifai").api.adaptive
    assert not Settings.from_options(backend="clarifai", rate_limit=5.0).api.adaptive
    assert options.auto_or_number(" AUTO", "--rate-limit") == "auto"
    with pytest.raises(ConfigError, match="--rate-limit takes auto or a number"):
        options.auto_or_number("fast", "--rate-limit")
    with pytest.raises(ConfigError, match="above --rate-limit-max"):
        Settings.from_options(rate_limit=8.0, rate_limit_max=4.0)


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
