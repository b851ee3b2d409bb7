"""Checks of settings values, each raising a ConfigError whose message names the setting (its
flag or variable) and says what it takes: the one place such messages are made."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipeline.errors import ConfigError


def one_of(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        choices = " or ".join(allowed) if len(allowed) == 2 else "one of " + ", ".join(allowed)
        raise ConfigError(f"{name} must be {choices}, not {value!r}")


def at_least(name: str, value: float | None, low: float, *, at_most: float | None = None,
             above: bool = False) -> None:
    """A finite number >= low (> low with `above`) and <= at_most; None means unset."""
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {value}")
    if value < low or (above and value == low) or (at_most is not None and value > at_most):
        span = f"between {low:g} and {at_most:g}" if at_most is not None else (
            f"above {low:g}" if above else f"at least {low:g}")
        raise ConfigError(f"{name} must be {span}, not {value:g}")
