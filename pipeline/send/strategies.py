"""The strategies, registered once: the command line's choices and options, `plan`'s cost table
and the settings are all made from this registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline import validate
from pipeline.errors import ConfigError
from pipeline.send.compact import Compact
from pipeline.send.copy import Copy
from pipeline.send.frames import Frames
from pipeline.send.strategy import Strategy

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Copy, Compact, Frames)}
DEFAULT = Copy.name


def named(name: str, values: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy `name`, with its settings taken from `values` (option names to values;
    what is missing keeps its default, what belongs to other strategies is not its concern)."""
    validate.one_of("--strategy", name, tuple(STRATEGIES))
    chosen = STRATEGIES[name]
    if (values or {}).get("skip_similar") and not _has(chosen, "skip_similar"):
        skipping = ", ".join(n for n, c in STRATEGIES.items() if _has(c, "skip_similar"))
        raise ConfigError(f"--skip-similar works with --strategy {skipping.replace(', ', ' or ')}, "
                          f"not {name} ({name} sends the video itself: every sampled frame is "
                          f"scored and billed)")
    return _made(chosen, values or {})


def _has(cls: type[Strategy], setting: str) -> bool:
    return any(f.name == setting for f in cls.settings())


def every(values: Mapping[str, Any] | None = None) -> list[Strategy]:
    """Every strategy, each with its settings from `values` (for `plan`'s cost table)."""
    return [_made(cls, values or {}) for cls in STRATEGIES.values()]


def _made(cls: type[Strategy], values: Mapping[str, Any]) -> Strategy:
    return cls(**{f.name: values[f.name] for f in cls.settings() if values.get(f.name)
                  is not None})
