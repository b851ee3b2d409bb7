"""`--skip-similar` for the strategies that choose what is sent (compact, frames): their four
settings, their part of the run key, and what a video that skips prepares beside its usual
pass (its signatures, its first round's selection). The selection itself is `pipeline.skip`;
the rounds are driven by the video (`batch.video`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline import skip
from pipeline.send.strategy import setting
from pipeline.types import Chunk

SIGNATURES = "signatures.gray"  # the pass's second output, beside the proxy or the images


def similar() -> Any:
    return setting(False, "--skip-similar", "compact, frames: do not send a sampled frame "
                   "that is nearly the last one sent; its timeline entry carries that frame's "
                   "concepts and says so (carried_from_ms) (default: off, every frame sent)")


def threshold() -> Any:
    return setting(0.02, "--skip-threshold", "--skip-similar: the share of a frame's pixels "
                   "that may change (by more than 12 of 255 levels, on a 64x64 gray thumbnail) "
                   "for it to be carried, 0-1 (default 0.02)", low=0, high=1, metavar="SHARE")


def max_carry() -> Any:
    return setting(10_000, "--max-carry-ms", "--skip-similar: a frame is sent at least every "
                   "this many ms, 100-10000 (default 10000)", low=100, high=10_000,
                   metavar="MS")


def audit_share() -> Any:
    return setting(0.02, "--audit-share", "--skip-similar: the share of the carried frames "
                   "sent anyway, to measure what carrying cost (billed), 0-1 (default 0.02)",
                   low=0, high=1, metavar="SHARE")


class Skips(Protocol):
    """A strategy with the four settings (frozen: read-only)."""

    @property
    def skip_similar(self) -> bool: ...
    @property
    def skip_threshold(self) -> float: ...
    @property
    def max_carry_ms(self) -> int: ...
    @property
    def audit_share(self) -> float: ...


def rules(strategy: Skips, sample_ms: int) -> skip.Rules | None:
    """How a video skips under `strategy`; None when it does not."""
    if not strategy.skip_similar:
        return None
    return skip.Rules.of(strategy.skip_threshold, strategy.max_carry_ms, strategy.audit_share,
                         sample_ms)


def key(strategy: Skips) -> tuple[tuple[str, object], ...]:
    """The settings' part of the run key: nothing when off (results as before)."""
    if not strategy.skip_similar:
        return ()
    return (("skip", {"threshold": strategy.skip_threshold,
                      "max_carry_ms": strategy.max_carry_ms,
                      "audit_share": strategy.audit_share}),)


class Skipping:
    """The Skipper of a strategy's prepared chunks: the rules, the signatures file its pass
    wrote, and how it cuts chosen instants into chunks."""

    def __init__(self, rules: skip.Rules, signatures: Path, count: int,
                 carrying: Callable[[Sequence[int], int], list[Chunk]]) -> None:
        self.rules = rules
        self._path = signatures
        self._count = count
        self._carrying = carrying

    def signatures(self) -> skip.Signatures:
        return skip.Signatures(self._path, self._count)

    def carrying(self, instants: Sequence[int], first_index: int) -> list[Chunk]:
        return self._carrying(instants, first_index)
