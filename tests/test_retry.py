"""The retry policy and the rate limiter, with tenacity's sleep and the clock injected."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.backends.ratelimit import RateLimiter
from pipeline.backends.retry import RetryConfig, policy
from pipeline.errors import AuthError, TransientBackendError, UnreachableError

pytestmark = pytest.mark.pure

CONFIG = RetryConfig(attempts=5, base=0.5, cap=30.0, throttle_floor=2.0)


def failing(errors: list[Exception], calls: list[int]) -> Callable[[], str]:
    """A call that raises the given errors in turn, then answers "ok"."""

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return call


def test_transient_errors_are_retried_with_full_jitter_windows() -> None:
    """Each wait lies in [0, base x 2^(n-1)]: exponential backoff, full jitter."""
    sleeps: list[float] = []
    calls: list[int] = []
    errors: list[Exception] = [TransientBackendError("chunk 0: UNAVAILABLE", code="UNAVAILABLE")
                               for _ in range(4)]
    result = policy(CONFIG, sleep=sleeps.append, rng=random.Random(1))(failing(errors, calls))
    assert result == "ok" and len(calls) == 5 and len(sleeps) == 4
    for n, wait in enumerate(sleeps, start=1):
        assert 0 <= wait <= CONFIG.base * 2 ** (n - 1)


def test_throttled_answers_wait_longer() -> None:
    """CONN_THROTTLED waits at least the doubling floor, more than any unthrottled window."""
    sleeps: list[float] = []
    errors: list[Exception] = [TransientBackendError("chunk 0: CONN_THROTTLED", code=11005,
                                                     throttled=True) for _ in range(4)]
    policy(CONFIG, sleep=sleeps.append, rng=random.Random(1))(failing(errors, []))
    for n, wait in enumerate(sleeps, start=1):
        assert wait >= CONFIG.throttle_floor * 2 ** (n - 1) > CONFIG.base * 2 ** (n - 1)


def test_permanent_errors_are_not_retried() -> None:
    """An auth error reaches the caller as itself after one call (reraise, no RetryError)."""
    sleeps: list[float] = []
    calls: list[int] = []
    with pytest.raises(AuthError):
        policy(CONFIG, sleep=sleeps.append)(failing([AuthError("refused", code=11008)], calls))
    assert len(calls) == 1 and sleeps == []


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    """After `attempts` tries the last transient error itself is raised."""
    calls: list[int] = []
    errors: list[Exception] = [TransientBackendError(f"try {i}") for i in range(10)]
    with pytest.raises(TransientBackendError, match="try 4"):
        policy(CONFIG, sleep=lambda s: None)(failing(errors, calls))
    assert len(calls) == CONFIG.attempts


def test_total_time_is_bounded() -> None:
    """A wait that would pass max_seconds (throttle_seconds, for a throttle) is not taken: the
    error is raised instead."""
    calls: list[int] = []
    config = RetryConfig(attempts=50, max_seconds=1.0, throttle_seconds=1.0, throttle_floor=5.0)
    errors: list[Exception] = [TransientBackendError("busy", throttled=True) for _ in range(10)]
    with pytest.raises(TransientBackendError):
        policy(config, sleep=lambda s: None)(failing(errors, calls))
    assert len(calls) == 1


def test_each_attempt_is_logged_with_the_error_and_the_next_wait(
        caplog: pytest.LogCaptureFixture) -> None:
    """One warning per failed attempt: the error (which names chunk and code) and the wait."""
    errors: list[Exception] = [TransientBackendError("chunk 7: TRY_AGAIN (10030): later")]
    with caplog.at_level(logging.WARNING, logger="pipeline.backends.retry"):
        policy(CONFIG, sleep=lambda s: None)(failing(errors, []))
    (record,) = caplog.records
    assert "chunk 7: TRY_AGAIN (10030)" in record.getMessage()
    assert "next try in" in record.getMessage()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def start_times(rate: float, count: int) -> tuple[RateLimiter, list[float]]:
    """A limiter on a fake clock, and the clock's time at each of `count` acquisitions."""
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(count):
        limiter.acquire()
        starts.append(clock.now)
    return limiter, starts


def test_rate_limiter_allows_a_burst_then_never_more_than_rate_per_second() -> None:
    """25 starts at 10/s: 10 at once, then no window of 1 s ever holds more than 10."""
    limiter, starts = start_times(10, 25)
    assert starts[:10] == [0.0] * 10
    for i, t in enumerate(starts):
        assert sum(1 for u in starts[i:] if u < t + 1.0) <= 10
    assert starts[-1] == pytest.approx(2 * limiter.window)


def test_rate_limiter_below_one_request_a_second() -> None:
    """0.5/s means one start every 2 s (and the 0.1 s of slack for arrival jitter)."""
    _, starts = start_times(0.5, 3)
    assert starts == pytest.approx([0.0, 2.1, 4.2])


def test_rate_limiter_is_shared_across_threads() -> None:
    """4 threads, 32 starts at 20/s: the last start can come no sooner than 1 s in."""
    limiter = RateLimiter(20)
    began = time.monotonic()
    ends: list[float] = []

    def worker() -> None:
        for _ in range(8):
            limiter.acquire()
            ends.append(time.monotonic() - began)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ends) == 32
    assert 0.95 <= max(ends) < 3.0  # starts 21..32 wait for the first second to pass


def concurrent_starts(rate: float, arrivals: list[float], late: list[float]) -> list[float]:
    """Threads arrive at `arrivals` and each takes one start, as the limiter lets them: an
    event simulation on a fake clock in which a refused thread sleeps until the time it was
    given and, like a thread on a busy machine, may wake `late` seconds after it."""
    limiter = RateLimiter(rate, clock=lambda: 0.0, sleep=lambda seconds: None)
    waiting = [(t, i) for i, t in enumerate(arrivals)]
    heapq.heapify(waiting)
    starts: list[float] = []
    while waiting:
        now, i = heapq.heappop(waiting)
        wake = limiter.try_start(now)
        if wake is None:
            starts.append(now)
        else:
            heapq.heappush(waiting, (wake + late[i % len(late)], i))
    return starts


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0.2, 40), gaps=st.lists(st.floats(0, 0.7), min_size=1, max_size=60),
       late=st.lists(st.floats(0, 0.5), min_size=1, max_size=5))
def test_rate_limiter_never_starts_more_than_the_rate_in_any_second(
        rate: float, gaps: list[float], late: list[float]) -> None:
    """Whatever the rate (2.5, 10/3, 0.4 ...), however requests arrive from many threads, and
    however late they wake, no 1-second window ever holds more than `rate` starts, nor two
    starts closer than 1/rate when the rate is below 1."""
    arrivals = list(itertools.accumulate(gaps))
    starts = sorted(concurrent_starts(rate, arrivals, late))
    assert len(starts) == len(arrivals)
    most = max(sum(1 for u in starts[i:] if u < t + 1.0) for i, t in enumerate(starts))
    assert most <= max(1, rate)
    if rate < 1:
        assert all(b - a >= 1 / rate for a, b in zip(starts, starts[1:], strict=False))


class Widest(random.Random):
    """Full jitter's worst case: every draw is the top of its window."""

    def uniform(self, a: float, b: float) -> float:
        return b


def schedule(errors: list[Exception], config: RetryConfig | None = None) -> list[float]:
    """The waits the policy asks for before it gives up or succeeds."""
    sleeps: list[float] = []
    with pytest.raises(TransientBackendError):
        policy(config, sleep=sleeps.append, rng=Widest())(failing(errors, []))
    return sleeps


def test_the_defaults_are_six_attempts_in_300_s_doubling_from_half_a_second() -> None:
    """RetryConfig(): 6 attempts, 300 s, windows 0.5 s doubling to a 30 s cap, throttling from
    a 2 s floor, throttles retried for 900 s without using up attempts; with the widest draws
    the waits are exactly that schedule."""
    assert RetryConfig() == RetryConfig(attempts=6, max_seconds=300.0, base=0.5, cap=30.0,
                                        throttle_floor=2.0, throttle_seconds=900.0,
                                        paced=False)
    unavailable: list[Exception] = [TransientBackendError("down", code="UNAVAILABLE")
                                    for _ in range(20)]
    assert schedule(unavailable) == [0.5, 1.0, 2.0, 4.0, 8.0]
    throttled: list[Exception] = [TransientBackendError("slow", code=11005, throttled=True)
                                  for _ in range(20)]
    assert schedule(throttled) == [2.5, 5.0, 10.0, 20.0, 38.0, 46.0] + [60.0] * 12


def test_waits_stop_doubling_at_the_cap() -> None:
    """Past 30 s a window no longer grows."""
    errors: list[Exception] = [TransientBackendError("down") for _ in range(20)]
    waits = schedule(errors, RetryConfig(attempts=10, max_seconds=10_000))
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_each_failed_attempt_logs_the_wait_it_is_about_to_take(
        caplog: pytest.LogCaptureFixture) -> None:
    """The warning gives the attempt's number, the error and the wait the policy then sleeps."""
    sleeps: list[float] = []
    errors: list[Exception] = [TransientBackendError("chunk 2: UNAVAILABLE") for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="pipeline.backends.retry"):
        policy(CONFIG, sleep=sleeps.append, rng=Widest())(failing(errors, []))
    assert sleeps == [0.5, 1.0]
    assert caplog.messages == ["attempt 1 failed: chunk 2: UNAVAILABLE; next try in 0.50 s",
                               "attempt 2 failed: chunk 2: UNAVAILABLE; next try in 1.00 s"]


def test_an_api_found_unreachable_is_not_retried() -> None:
    """UnreachableError is transient by kind but final for this run: raised after one call."""
    calls: list[int] = []
    with pytest.raises(UnreachableError):
        policy(CONFIG, sleep=lambda s: None)(failing([UnreachableError("gone")], calls))
    assert len(calls) == 1


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf")])
def test_a_rate_that_is_not_a_finite_positive_number_is_refused(rate: float) -> None:
    """0, a negative rate, nan and inf cannot be honoured: ValueError saying what is allowed."""
    with pytest.raises(ValueError, match="finite number above 0"):
        RateLimiter(rate)


def test_the_window_is_one_second_plus_the_arrival_slack() -> None:
    """At 10/s the eleventh start waits for the first to leave its 1.1 s window, and acquire
    says how long it waited."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10
    assert limiter.acquire() == pytest.approx(1.1)
    assert clock.now == pytest.approx(1.1)


def test_acquire_waits_again_when_another_thread_takes_the_freed_start() -> None:
    """At 1/s, a thread that wakes as the slot frees but finds another thread took it waits
    for the next one; acquire returns the whole 2 s it waited."""
    clock = FakeClock()
    rivals: list[float | None] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if not rivals:  # another thread wins the start that just came free
            rivals.append(limiter.try_start(clock.now))

    limiter = RateLimiter(1, slack=0.0, clock=clock, sleep=sleep)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(2.0)
    assert rivals == [None] and clock.now == pytest.approx(2.0)
