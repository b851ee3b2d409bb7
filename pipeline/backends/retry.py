"""The one retry policy for requests to a prediction API (tenacity, declared, not looped)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

from pipeline.errors import TransientBackendError, UnreachableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryConfig:
    """Bounds of the policy: attempts, total time, and the backoff windows (seconds)."""

    attempts: int = 6
    max_seconds: float = 300.0
    base: float = 0.5  # first full-jitter window; doubles each attempt
    cap: float = 30.0  # widest window
    throttle_floor: float = 2.0  # a throttled answer waits at least this (doubling), then jitter
    # Throttled answers do not use up `attempts`: they are retried until this many seconds
    # have passed since the first attempt (the account's limit is shared: waiting is enough).
    throttle_seconds: float = 900.0
    # A pacer that learns the rate (`--rate-limit auto`) spaces the retries of throttled
    # answers itself: they wait only a jitter window of `base`, without the floor.
    paced: bool = False


class Backoff(tenacity.wait.wait_base):
    """Exponential backoff with full jitter; a throttled answer first waits out a floor.

    Full jitter (uniform over [0, window]) spreads the retries of many threads apart. A floor
    for CONN_THROTTLED, because Clarifai's limit is per second and per user: retrying
    sooner than a second later only gets throttled again."""

    def __init__(self, config: RetryConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        n = retry_state.attempt_number
        config = self.config
        if _throttled(retry_state) and config.paced:
            wait = self.rng.uniform(0, config.base)
        else:
            wait = self.rng.uniform(0, min(config.cap, config.base * 2 ** (n - 1)))
            if _throttled(retry_state):
                wait += min(config.cap, config.throttle_floor * 2 ** (n - 1))
        return max(wait, _pushback(retry_state))


class Budget(tenacity.stop.stop_base):
    """Stop after `attempts` failures that were not throttles, or once the next wait would
    pass `max_seconds`; a throttled failure stops only once it would pass
    `throttle_seconds`. Time is the time asked to sleep, when more than the clock shows (a
    test's sleep records waits without taking them)."""

    def __init__(self, config: RetryConfig) -> None:
        self.config = config

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        elapsed = max(retry_state.seconds_since_start or 0.0, retry_state.idle_for)
        ending = elapsed + retry_state.upcoming_sleep
        if _throttled(retry_state):
            return ending >= self.config.throttle_seconds
        others = retry_state.attempt_number - getattr(retry_state, _THROTTLES, 0)
        return others >= self.config.attempts or ending >= self.config.max_seconds


_THROTTLES = "video_pipeline_throttles"  # throttled failures so far, kept on the call's state


def _count_throttle(retry_state: tenacity.RetryCallState) -> None:
    if _throttled(retry_state):
        setattr(retry_state, _THROTTLES, getattr(retry_state, _THROTTLES, 0) + 1)


def _failure(retry_state: tenacity.RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None and outcome.failed else None


def _throttled(retry_state: tenacity.RetryCallState) -> bool:
    exc = _failure(retry_state)
    return isinstance(exc, TransientBackendError) and exc.throttled


def _pushback(retry_state: tenacity.RetryCallState) -> float:
    """The wait the server asked for (gRPC's retry pushback), if it did."""
    exc = _failure(retry_state)
    found = exc.pushback if isinstance(exc, TransientBackendError) else None
    return found or 0.0


def log_attempt(logger: logging.Logger) -> Callable[[tenacity.RetryCallState], None]:
    """before_sleep: one line per failed attempt (the error names the chunk and the code)."""

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        exc = outcome.exception() if outcome is not None else None
        logger.warning("attempt %d failed: %s; next try in %.2f s",
                       retry_state.attempt_number, exc, wait)

    return before_sleep


def policy(config: RetryConfig | None = None, *,
           sleep: Callable[[float], None] = time.sleep,
           rng: random.Random | None = None,
           logger: logging.Logger = log) -> tenacity.Retrying:
    """Retry TransientBackendError only (not an API already found unreachable); every other
    error reaches the caller at once, as is. Throttles have their own budget (`Budget`)."""
    config = config or RetryConfig()
    return tenacity.Retrying(
        retry=(tenacity.retry_if_exception_type(TransientBackendError)
               & tenacity.retry_if_not_exception_type(UnreachableError)),
        stop=Budget(config),
        wait=Backoff(config, rng or random.Random()),
        sleep=sleep,
        after=_count_throttle,
        before_sleep=log_attempt(logger),
        reraise=True,
    )
