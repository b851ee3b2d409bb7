"""--skip-similar and the billing budget, in the pytest process alone: the walk over signatures
(which instants are sent, carried, audited), the audit's tightening, carried frames on every
clock and in every output, and a budget shared by threads."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import answers, merge, skip
from pipeline.batch.billing import Budget
from pipeline.errors import BudgetReached, ConfigError, ImplausibleAnswerError
from pipeline.output import exports, formats, timeline
from pipeline.settings import Settings
from pipeline.types import Chunk, ChunkResult, Concept, Frame

pytestmark = [pytest.mark.pure]

RULES = skip.Rules(threshold=0.02, max_carry=10, audit_share=0.0)


def signatures(tmp_path: Path, levels: Sequence[np.ndarray | int]) -> skip.Signatures:
    """A signatures file: each instant a flat gray level, or the 64x64 array given."""
    rows = [np.full((skip.SIDE, skip.SIDE), v, np.uint8) if isinstance(v, int) else v
            for v in levels]
    path = tmp_path / "signatures.gray"
    np.stack(rows).astype(np.uint8).tofile(path)
    return skip.Signatures(path, len(rows))


def value(v: float) -> Frame:
    return Frame(0, (Concept("nsfw", "nsfw", v), Concept("sfw", "sfw", 1 - v)))


def test_a_still_picture_is_sent_once_every_max_carry(tmp_path: Path) -> None:
    """25 identical instants, a frame scored at least every 10: instants 0, 10, 20 are sent,
    every other instant carries the last of them."""
    found = skip.select(signatures(tmp_path, [100] * 25), RULES)
    assert found.chosen == found.sent == (0, 10, 20)
    assert found.carried == 22 and found.anchor(9) == 0 and found.anchor(19) == 10


def test_a_change_past_the_threshold_is_sent_and_becomes_the_anchor(tmp_path: Path) -> None:
    """A cut (dark to bright) is sent at once; what follows carries the new picture."""
    found = skip.select(signatures(tmp_path, [20] * 5 + [200] * 5), RULES)
    assert found.chosen == (0, 5) and found.anchor(7) == 5


def test_noise_under_the_level_is_not_a_change_but_a_small_object_is(tmp_path: Path) -> None:
    """Camera noise of up to 12 levels on every pixel leaves a frame carried; a 16x16 object
    (6% of the thumbnail) changing by 100 levels is sent."""
    rng = np.random.default_rng(1)
    base = np.full((skip.SIDE, skip.SIDE), 120, np.int16)
    noisy = [(base + rng.integers(-6, 7, base.shape)).astype(np.uint8) for _ in range(4)]
    moved = base.copy()
    moved[:16, :16] += 100
    found = skip.select(signatures(tmp_path, [*noisy, moved.astype(np.uint8)]), RULES)
    assert found.chosen == (0, 4)


def test_audits_are_chosen_by_the_instant_the_same_on_every_run(tmp_path: Path) -> None:
    """The audited share is about --audit-share, the same instants every time, never an
    anchor: auditing changes what is sent, never what is carried from where."""
    share = [skip.audited(i, 0.02) for i in range(100_000)]
    assert 0.018 < sum(share) / len(share) < 0.022
    assert share == [skip.audited(i, 0.02) for i in range(100_000)]
    sigs = signatures(tmp_path, [90] * 400)
    audited = skip.select(sigs, skip.Rules(0.02, 10, 0.2))
    assert audited == skip.select(sigs, skip.Rules(0.02, 10, 0.2))
    assert audited.chosen == skip.select(sigs, RULES).chosen
    assert set(audited.audited) == {i for i in range(400) if i % 10 and skip.audited(i, 0.2)}


def test_disagreeing_audits_halve_the_threshold_for_the_rest_of_the_video(
        tmp_path: Path) -> None:
    """Three audits whose answers differ from their anchors' by 0.1 tighten the threshold
    from the instant after the third, halving it; agreeing audits leave it; a video tightens
    at most three times."""
    sigs = signatures(tmp_path, [90] * 200)
    first = skip.select(sigs, skip.Rules(0.4, 10, 0.3))
    agree = {i: value(0.2) for i in first.sent}
    assert skip.next_round(sigs, skip.Rules(0.4, 10, 0.3), first, agree) is None
    differ = {i: value(0.2 if i in first.chosen else 0.3) for i in first.sent}
    tighter = skip.next_round(sigs, skip.Rules(0.4, 10, 0.3), first, differ)
    assert tighter is not None
    third = first.audited[2]
    assert tighter.regimes == (skip.Regime(0, 0.4), skip.Regime(third + 1, 0.2))
    assert set(first.sent) <= set(tighter.sent)
    found: skip.Selection | None = tighter
    rounds = 1
    while found is not None:
        scores = {i: value(0.2 if i in found.chosen else 0.3) for i in found.sent}
        found, rounds = skip.next_round(sigs, skip.Rules(0.4, 10, 0.3), found, scores), rounds + 1
    assert rounds == skip.TIGHTENINGS + 1


def test_a_carried_instant_shows_its_anchors_concepts_and_says_from_when() -> None:
    """fill: a sent instant keeps its own answer; a carried one its anchor's concepts at its
    own time, with carried_from_ms the anchor's time."""
    selection = skip.Selection(5, (0, 3), (0, 2, 3), (skip.Regime(0, 0.02),))
    sent = {0: Frame(500, value(0.1).concepts), 2: Frame(2500, value(0.5).concepts),
            3: Frame(3500, value(0.9).concepts)}
    frames = list(skip.fill(selection, sent, 1000))
    assert [f.time_ms for f in frames] == [500, 1500, 2500, 3500, 4500]
    assert [f.carried_from_ms for f in frames] == [None, 500, None, None, 3500]
    assert frames[1].concepts == sent[0].concepts and frames[4].concepts == sent[3].concepts
    assert skip.audit(selection, sent) == skip.Agreement(1, 0.0, 0.4)
    assert skip.Selection.from_dict(json.loads(json.dumps(selection.as_dict()))) == selection


def test_a_chunk_of_chosen_instants_is_placed_on_its_instants() -> None:
    """An API's answer for a chunk of instants 3, 7, 8 (a 3 s video: frames at 500, 1500,
    2500 ms) and an image batch's (0, 1, 2) both land at 3500, 7500, 8500 ms."""
    chunk = Chunk(0, "p.mp4", Fraction(3), Fraction(9), 1000, 3, instants=(3, 7, 8))
    for clock, times in (("chunk", (500, 1500, 2500)), ("instants", (0, 1, 2))):
        result = ChunkResult(0, tuple(Frame(t, value(0.1).concepts) for t in times),
                             clock=clock)  # type: ignore[arg-type]
        answers.check(chunk, result, 1000)
        placed = merge.place(chunk, result, 1000)
        assert [f.time_ms for f in placed.frames] == [3500, 7500, 8500]


def test_an_answer_that_misses_or_doubles_a_chosen_instant_is_implausible() -> None:
    """Two frames in one interval, or a frame missing, is not an answer for the chunk."""
    chunk = Chunk(0, "p.mp4", Fraction(3), Fraction(9), 1000, 3, instants=(3, 7, 8))
    for times in ((500, 900, 2500), (500, 1500)):
        result = ChunkResult(0, tuple(Frame(t, value(0.1).concepts) for t in times))
        with pytest.raises(ImplausibleAnswerError):
            answers.check(chunk, result, 1000)


def test_carried_frames_are_written_as_json_and_csv_would_write_them(tmp_path: Path) -> None:
    """timeline.json (json.dumps' text, byte for byte, read back the same), frames.csv (a
    carried_from_ms column, empty for a frame sent) and frames.jsonl (carried_from_ms before
    the concepts) hold the carried frames."""
    frames = [Frame(500, value(0.25).concepts), Frame(1500, value(0.25).concepts, 500)]
    head, tail = {"sample_ms": 1000}, {"run_key": {"k": 1}}
    text = "".join(timeline.pieces(head, frames, tail))
    whole = {**head, "frames": [formats.frame_dict(i, f) for i, f in enumerate(frames)], **tail}
    assert text == json.dumps(whole, indent=2, ensure_ascii=False) + "\n"
    (tmp_path / "timeline.json").write_text(text)
    assert list(timeline.read_frames(tmp_path / "timeline.json")) == frames
    rows = list(csv.DictReader(io.StringIO("".join(formats.frames_csv(frames)))))
    assert [r["carried_from_ms"] for r in rows] == ["", "", "500", "500"]
    lines = [json.loads(line) for line in exports.frames_jsonl(frames)]
    assert "carried_from_ms" not in lines[0] and lines[1]["carried_from_ms"] == 500
    assert list(lines[1]) == ["index", "time_ms", "carried_from_ms", "concepts"]


def test_the_budget_refuses_the_request_that_would_pass_it_and_all_after() -> None:
    """100 frames: 60 and 40 go; 1 more is refused, and from then on even 0 is."""
    budget = Budget(100)
    budget.charge(60)
    budget.charge(40)
    with pytest.raises(BudgetReached, match="100 frames billed of --max-billed-frames 100"):
        budget.charge(1)
    assert budget.closed
    with pytest.raises(BudgetReached):
        budget.charge(0)
    assert budget.spent == 100


def test_threads_sharing_a_budget_never_spend_past_it() -> None:
    """Eight threads charging requests of 1-128 frames: what was let through is at most the
    budget, counted once each."""
    budget = Budget(5_000)
    spent: list[int] = []
    lock = threading.Lock()

    def spend(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            frames = rng.randint(1, 128)
            try:
                budget.charge(frames)
            except BudgetReached:
                return
            with lock:
                spent.append(frames)

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(spent) == budget.spent <= 5_000 and budget.closed


def test_skip_similar_with_copy_is_a_configuration_error_not_a_silent_full_bill() -> None:
    """copy sends the video itself, so it cannot skip: asking for both is refused in one
    sentence (exit 2 on the command line), while compact and frames take it."""
    with pytest.raises(ConfigError, match="--skip-similar works with --strategy compact or "
                                          "frames, not copy"):
        Settings.from_options(skip_similar=True)
    for strategy in ("compact", "frames"):
        chosen = Settings.from_options(strategy=strategy, skip_similar=True).strategy
        assert vars(chosen)["skip_similar"] is True


@pytest.mark.parametrize("damage", [
    {"regimes": {}}, {"regimes": []}, {"chosen": []}, {"chosen": [5, 10, 20]},
    {"sent": [0]}, {"sent": []}, {"count": 0}, {"sent": [0, 10, 20, 99]}, {"chosen": [0, 20, 10]},
    {"regimes": [[3, 0.02]]}, {"regimes": [[0, 7.0]]}])
def test_a_damaged_saved_selection_is_refused_so_the_video_is_chosen_anew(
        damage: dict[str, object]) -> None:
    """A selection read back from chunks.json that breaks what every selection holds (instant
    0 chosen, ascending, chosen within sent, regimes from 0) is a ValueError or TypeError,
    which makes the video choose its instants anew instead of failing on every rerun."""
    good = {"count": 30, "chosen": [0, 10, 20], "sent": [0, 10, 15, 20], "regimes": [[0, 0.02]]}
    assert skip.Selection.from_dict(good).carried == 26
    with pytest.raises((ValueError, TypeError)):
        skip.Selection.from_dict({**good, **damage})


def test_max_carry_is_never_longer_than_asked() -> None:
    """A frame is sent at least every --max-carry-ms, also when it is not a multiple of the
    sampling interval: 150 ms at 100 ms carries no frame; 10 s at 1 s carries up to 9."""
    assert skip.Rules.of(0.02, 150, 0.02, 100).max_carry == 1
    assert skip.Rules.of(0.02, 10_000, 0.02, 1000).max_carry == 10
    assert skip.Rules.of(0.02, 10_000, 0.02, 333).max_carry == 30
