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
        window = min(self.config.cap, self.config.base * 2 ** (n - 1))
        wait = self.rng.uniform(0, window)
        if _throttled(retry_state):
            wait += min(self.config.cap, self.config.throttle_floor * 2 ** (n - 1))
        return wait


def _throttled(retry_state: tenacity.RetryCallState) -> bool:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    return isinstance(exc, TransientBackendError) and exc.throttled


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
    error reaches the caller at once, as is."""
    config = config or RetryConfig()
    return tenacity.Retrying(
        retry=(tenacity.retry_if_exception_type(TransientBackendError)
               & tenacity.retry_if_not_exception_type(UnreachableError)),
        stop=(tenacity.stop_after_attempt(config.attempts)
              | tenacity.stop_before_delay(config.max_seconds)),
        wait=Backoff(config, rng or random.Random()),
        sleep=sleep,
        before_sleep=log_attempt(logger),
        reraise=True,
    )
