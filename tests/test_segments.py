"""Concept segments against hand-made frame lists: a frame stands for its sampling interval."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pipeline.output.segments import ConceptSegments, Rules, Segment, find_segments
from pipeline.types import Concept, Frame

pytestmark = pytest.mark.pure


def frames(values: Sequence[float | None], *, sample_ms: int = 1000, first: int = 500,
           name: str = "cat") -> list[Frame]:
    """One frame per value at first, first + sample_ms, ...; None: the concept is absent."""
    return [Frame(first + i * sample_ms,
                  () if v is None else (Concept(f"id-{name}", name, v),))
            for i, v in enumerate(values)]


def spans(found: list[ConceptSegments], name: str = "cat") -> list[tuple[int, int]]:
    (concept,) = [c for c in found if c.name == name]
    return [(s.start_ms, s.end_ms) for s in concept.segments]


def run(values: Sequence[float | None], rules: Rules | None = None, *, sample_ms: int = 1000,
        duration_ms: int | None = None) -> list[ConceptSegments]:
    return find_segments(frames(values, sample_ms=sample_ms), rules or Rules(),
                         sample_ms=sample_ms, duration_ms=duration_ms)


def test_a_run_covers_its_frames_whole_sampling_intervals() -> None:
    """Frames at 2.5, 3.5, 4.5 s above the threshold: the segment is 2.0-5.0 s."""
    (segment,) = run([0.1, 0.2, 0.9, 0.8, 0.7, 0.1])[0].segments
    assert segment == Segment("id-cat", "cat", 2000, 5000, 0.9, (0.9 + 0.8 + 0.7) / 3, 3)
    assert segment.duration_ms == 3000


def test_the_threshold_itself_counts_as_present() -> None:
    """Exactly 0.5 is in; the largest float below 0.5 is out."""
    below = 0.49999999999999994
    assert spans(run([0.5, below, below, 0.5])) == [(0, 1000), (3000, 4000)]
    assert spans(run([below, below])) == []


def test_a_gap_of_one_sample_is_bridged_by_default() -> None:
    """One frame below between two above: one segment of 3 frames' time, 2 frames counted."""
    (segment,) = run([0.9, 0.1, 0.9]).pop().segments
    assert (segment.start_ms, segment.end_ms, segment.frames) == (0, 3000, 2)
    assert segment.mean_value == 0.9


def test_a_gap_longer_than_max_gap_ms_splits_the_segment() -> None:
    """Two frames below (2 s) split at the default gap of one sample; bridged at 2000 ms."""
    assert spans(run([0.9, 0.1, 0.1, 0.9])) == [(0, 1000), (3000, 4000)]
    assert spans(run([0.9, 0.1, 0.1, 0.9], Rules(max_gap_ms=2000))) == [(0, 4000)]
    assert spans(run([0.9, 0.1, 0.9], Rules(max_gap_ms=0))) == [(0, 1000), (2000, 3000)]


def test_a_missing_concept_is_a_gap_like_a_low_value() -> None:
    """A frame without the concept at all counts as below the threshold."""
    assert spans(run([0.9, None, 0.9])) == [(0, 3000)]
    assert spans(run([0.9, None, None, 0.9])) == [(0, 1000), (3000, 4000)]


def test_a_run_continues_across_a_chunk_boundary() -> None:
    """Clarifai samples each chunk from its own start: a chunk from 60,067 ms puts frames at
    60,567, 61,567, ... after the first chunk's 59,500. The frames still tile the time (the
    boundary is halfway between them), so a run over the boundary stays one segment, even
    when no gap at all may be bridged."""
    first = [Frame(t, (Concept("c", "cat", 0.9),)) for t in range(56_500, 60_000, 1000)]
    second = [Frame(t, (Concept("c", "cat", 0.8),)) for t in range(60_567, 64_000, 1000)]
    for rules in (Rules(), Rules(max_gap_ms=0)):
        (concept,) = find_segments(first + second, rules, sample_ms=1000)
        (segment,) = concept.segments
        assert (segment.start_ms, segment.end_ms, segment.frames) == (56_000, 64_067, 8)


def test_close_frames_at_a_boundary_do_not_overlap() -> None:
    """Frames 400 ms apart at a boundary: each covers up to halfway to the other."""
    times = [500, 1500, 1900, 2900]
    found = find_segments([Frame(t, (Concept("c", "cat", v),)) for t, v in
                           zip(times, [0.9, 0.9, 0.1, 0.9], strict=True)],
                          Rules(max_gap_ms=0), sample_ms=1000)
    assert spans(found) == [(0, 1700), (2400, 3400)]


def test_min_segment_ms_drops_blips() -> None:
    """A one-frame blip (1 s) goes at --min-segment-ms 1500; the 3 s run stays."""
    values = [0.9, 0.1, 0.1, 0.9, 0.9, 0.9]
    assert spans(run(values)) == [(0, 1000), (3000, 6000)]
    assert spans(run(values, Rules(min_segment_ms=1500))) == [(3000, 6000)]
    assert spans(run(values, Rules(min_segment_ms=3000))) == [(3000, 6000)]


def test_the_last_segment_ends_at_the_video_end() -> None:
    """A 3.2 s video at 1000 ms has frames at 0.5, 1.5, 2.5 s; its last covers 2.0-3.0 s, and a
    video ending at 2.8 s clips it there."""
    assert spans(run([0.9, 0.9, 0.9], duration_ms=3200)) == [(0, 3000)]
    assert spans(run([0.9, 0.9, 0.9], duration_ms=2800)) == [(0, 2800)]


def test_start_of_interval_times_never_start_before_zero() -> None:
    """A server that stamps frames at 0, 1000, ... (the seed page's example): the first frame
    starts at 0, not at -500."""
    found = find_segments(frames([0.9, 0.9], first=0), Rules(), sample_ms=1000)
    assert spans(found) == [(0, 1500)]


def test_an_empty_timeline_has_no_concepts_and_no_segments() -> None:
    assert run([]) == []


def test_concepts_never_present_are_listed_with_no_segments() -> None:
    """Every concept seen is listed, in order of first appearance, segments or not."""
    timeline = [Frame(500 + 1000 * i, (Concept("a", "sfw", 0.9), Concept("b", "nsfw", 0.1)))
                for i in range(3)]
    found = find_segments(timeline, Rules(), sample_ms=1000)
    assert [(c.name, len(c.segments), c.total_ms) for c in found] == [("sfw", 1, 3000),
                                                                        ("nsfw", 0, 0)]


def test_other_sampling_intervals_scale_the_intervals() -> None:
    """At 2300 ms, frames at 1150, 3450, 5750: a run of the last two is 2300-6900 ms."""
    found = find_segments(frames([0.1, 0.9, 0.9], sample_ms=2300, first=1150), Rules(),
                          sample_ms=2300)
    assert spans(found) == [(2300, 6900)]
