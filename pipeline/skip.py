"""Skipping near-duplicate frames (`--skip-similar`), pure: which of a video's sampled instants
are sent, which carry the concepts of an earlier frame, which carried ones are audited (sent
anyway), how the audit agrees, and when a video's threshold tightens.

The measure. Each instant has a signature: a 64x64 gray thumbnail of the frame the strategy
sends, written by the same ffmpeg pass (no second decode). Two frames differ by the share of
their signatures' pixels whose level moved by more than LEVEL (of 255): camera noise, exposure
drift and codec flicker move levels by a few; a slide change, someone walking in, a cut move
many pixels by far more. A small per-pixel difference, not a perceptual hash: a 64-bit hash
stays the same across changes a model sees (on film it carried frames whose label differed).

The walk. Instant 0 is sent. Each later instant is carried when its signature is within the
threshold of its anchor (the last instant chosen) and the anchor is less than `max_carry`
instants before it; otherwise it is chosen: sent, and the new anchor. A share of the carried
instants, picked by a hash of the instant (the same on every run), is audited: sent too, never
an anchor, so its own answer says what carrying showed there.

Rounds. The answers of a round's audits are read in time order from the start of the current
regime; once at least MIN_AUDITS of them show a mean absolute difference above AUDIT_BOUND,
the threshold halves from the next instant on and the walk runs again from there: a new round
sends what it chose that was not sent yet. At most TIGHTENINGS times a video. Every instant
sent that the final walk did not choose counts as audited (its own answer is shown)."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from pipeline.errors import SegmentError
from pipeline.types import Frame, to_ms

SIDE = 64  # a signature is SIDE x SIDE gray levels
SIGNATURE_BYTES = SIDE * SIDE
LEVEL = 12  # a pixel changed when its level moved by more than this
MIN_AUDITS = 3  # audits a regime needs before it can tighten
AUDIT_BOUND = 0.03  # mean absolute difference of the audits past which the threshold halves
TIGHTENINGS = 3  # halvings a video may take


@dataclass(frozen=True)
class Rules:
    """How a video skips: `threshold`, the share of changed pixels up to which an instant is
    carried; an anchor carries to at most `max_carry` - 1 instants after it; `audit_share` of
    the carried instants are audited."""

    threshold: float
    max_carry: int
    audit_share: float

    @classmethod
    def of(cls, threshold: float, max_carry_ms: int, audit_share: float,
           sample_ms: int) -> Rules:
        """A frame is scored at least every `max_carry_ms`: instants fewer than that apart
        from their anchor are carried."""
        return cls(threshold, max(1, max_carry_ms // sample_ms), audit_share)


@dataclass(frozen=True)
class Regime:
    """The threshold in force from instant `start` on."""

    start: int
    threshold: float


@dataclass(frozen=True)
class Selection:
    """What a video sends: `chosen` (sent, and anchors: instant 0 always), `sent` (chosen and
    audited), both ascending, of `count` instants; the regimes, the first from instant 0."""

    count: int
    chosen: tuple[int, ...]
    sent: tuple[int, ...]
    regimes: tuple[Regime, ...]

    def anchor(self, instant: int) -> int:
        """The instant whose concepts `instant` carries (itself if chosen)."""
        return self.chosen[bisect.bisect_right(self.chosen, instant) - 1]

    @property
    def audited(self) -> tuple[int, ...]:
        chosen = set(self.chosen)
        return tuple(i for i in self.sent if i not in chosen)

    @property
    def carried(self) -> int:
        return self.count - len(self.sent)

    @property
    def tightened(self) -> tuple[Regime, ...]:
        return self.regimes[1:]

    def as_dict(self) -> dict[str, object]:
        return {"count": self.count, "chosen": list(self.chosen), "sent": list(self.sent),
                "regimes": [[r.start, r.threshold] for r in self.regimes]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Selection:
        """The selection saved with a chunk list (KeyError/TypeError/ValueError if malformed,
        or if it breaks what every selection holds: see `_whole`)."""
        regimes = raw["regimes"]
        if not isinstance(regimes, list):
            raise TypeError("a list of regimes")
        found = cls(int(str(raw["count"])), _ints(raw["chosen"]), _ints(raw["sent"]),
                    tuple(Regime(int(s), float(t)) for s, t in regimes))
        found._whole()
        return found

    def _whole(self) -> None:
        """ValueError unless: instant 0 is chosen; chosen and sent ascend, without repeats,
        inside the count; every chosen instant is sent; the regimes start at 0 and ascend,
        each threshold a share from 0 to 1."""
        ascending = all(a < b for a, b in zip(self.sent, self.sent[1:], strict=False)) and all(
            a < b for a, b in zip(self.chosen, self.chosen[1:], strict=False))
        starts = [r.start for r in self.regimes]
        if not (self.count >= 1 and self.chosen[:1] == (0,) and ascending
                and set(self.chosen) <= set(self.sent) and self.sent[-1] < self.count
                and starts[:1] == [0] and starts == sorted(set(starts))
                and all(0 <= r.threshold <= 1 for r in self.regimes)):
            raise ValueError("not a selection this program makes")


def _ints(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise TypeError("a list of instants")
    return tuple(int(v) for v in value)


class Signatures:
    """A video's signatures, one an instant, read from the file the strategy's pass wrote
    (mapped, not loaded: ten hours at one a second are 147 MB)."""

    def __init__(self, path: str | Path, count: int) -> None:
        size = Path(path).stat().st_size
        if size != count * SIGNATURE_BYTES:
            raise SegmentError(f"{path}: {size} bytes of signatures for {count} instants")
        self._data = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, SIDE, SIDE))
        self.count = count

    def distance(self, a: int, b: int) -> float:
        """The share of pixels whose level moved by more than LEVEL from instant a to b."""
        moved = np.abs(self._data[a].astype(np.int16) - self._data[b].astype(np.int16))
        return float(np.count_nonzero(moved > LEVEL)) / SIGNATURE_BYTES


def audited(instant: int, share: float) -> bool:
    """Whether a carried instant is audited: a hash of the instant under `share`, so the same
    instants on every run."""
    digest = hashlib.blake2b(f"audit:{instant}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2 ** 64


def select(signatures: Signatures, rules: Rules,
           previous: Selection | None = None, regime: Regime | None = None) -> Selection:
    """The first round's selection; or, with `previous` and a new `regime`, the walk run again
    from the regime's start (what came before it kept)."""
    regime = regime or Regime(0, rules.threshold)
    kept = [] if previous is None else [i for i in previous.chosen if i < regime.start]
    chosen, audits = _walk(signatures, rules, regime, kept[-1] if kept else None)
    sent = set(chosen) | set(audits) | set(previous.sent if previous else ())
    regimes = (previous.regimes if previous else ()) + (regime,)
    return Selection(signatures.count, tuple(kept + chosen), tuple(sorted(sent)), regimes)


def _walk(signatures: Signatures, rules: Rules, regime: Regime,
          anchor: int | None) -> tuple[list[int], list[int]]:
    """Chosen and audited instants from the regime's start to the end."""
    chosen: list[int] = []
    audits: list[int] = []
    for i in range(regime.start, signatures.count):
        if anchor is not None and i - anchor < rules.max_carry and \
                signatures.distance(anchor, i) <= regime.threshold:
            if audited(i, rules.audit_share):
                audits.append(i)
            continue
        chosen.append(i)
        anchor = i
    return chosen, audits


# -- agreement ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """How pairs of frames agree: how many, the share whose top concept is the same, and the
    mean absolute difference of their values (each pair's mean over the concepts either has,
    a concept a frame lacks counting 0)."""

    frames: int
    same_label: float
    mean_abs_diff: float

    def as_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "same_label": round(self.same_label, 6),
                "mean_abs_diff": round(self.mean_abs_diff, 6)}


def compare(a: Frame, b: Frame) -> tuple[bool, float]:
    """Whether two frames' top concepts are the same, and their mean absolute difference."""
    va = {c.id: c.value for c in a.concepts}
    vb = {c.id: c.value for c in b.concepts}
    ids = va.keys() | vb.keys()
    if not ids:
        return True, 0.0
    diff = sum(abs(va.get(i, 0.0) - vb.get(i, 0.0)) for i in ids) / len(ids)
    return _top(a) == _top(b), diff


def _top(frame: Frame) -> str | None:
    return max(frame.concepts, key=lambda c: c.value).id if frame.concepts else None


def agreement(pairs: Iterable[tuple[Frame, Frame]]) -> Agreement:
    same, total, n = 0, 0.0, 0
    for a, b in pairs:
        s, d = compare(a, b)
        same += s
        total += d
        n += 1
    return Agreement(n, same / n if n else 1.0, total / n if n else 0.0)


def audit(selection: Selection, scored: Mapping[int, Frame]) -> Agreement:
    """The audited instants' answers against their anchors' (what carrying showed there)."""
    return agreement((scored[i], scored[selection.anchor(i)]) for i in selection.audited)


def next_round(signatures: Signatures, rules: Rules, selection: Selection,
               scored: Mapping[int, Frame]) -> Selection | None:
    """The selection with its threshold tightened where the current regime's audits disagree
    past the bound; None if they do not (or the video has tightened its most)."""
    regime = selection.regimes[-1]
    if len(selection.regimes) > TIGHTENINGS:
        return None
    total = 0.0
    audits = (i for i in selection.audited if i >= regime.start)
    for n, i in enumerate(audits, start=1):
        total += compare(scored[i], scored[selection.anchor(i)])[1]
        if n >= MIN_AUDITS and total / n > AUDIT_BOUND:
            if i + 1 >= selection.count:
                return None
            return select(signatures, rules, selection, Regime(i + 1, regime.threshold / 2))
    return None


# -- the timeline -------------------------------------------------------------------------------
def instant_ms(instant: int, sample_ms: int) -> int:
    """Where instant n lies on the source clock: the middle of its interval."""
    return to_ms(Fraction((2 * instant + 1) * sample_ms, 2000))


def by_instant(selection: Selection, frames: Iterable[Frame],
               sample_ms: int) -> dict[int, Frame]:
    """The sent instants' answers (on the source clock), by instant."""
    at = {f.time_ms: f for f in frames}
    return {i: at[instant_ms(i, sample_ms)] for i in selection.sent
            if instant_ms(i, sample_ms) in at}


def fill(selection: Selection, scored: Mapping[int, Frame], sample_ms: int) -> Iterator[Frame]:
    """Every instant's frame: a sent one's answer, a carried one its anchor's concepts with
    `carried_from_ms`."""
    for i in range(selection.count):
        own = scored.get(i)
        if own is not None:
            yield own
            continue
        anchor = scored.get(selection.anchor(i))
        if anchor is None:
            raise SegmentError(f"instant {i} carries instant {selection.anchor(i)}, which has "
                               "no answer")
        yield Frame(instant_ms(i, sample_ms), anchor.concepts, carried_from_ms=anchor.time_ms)


def missing(selection: Selection, scored: Mapping[int, Frame]) -> Sequence[int]:
    """Sent instants with no answer."""
    return [i for i in selection.sent if i not in scored]
