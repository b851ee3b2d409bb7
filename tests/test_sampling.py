"""The sampling grid (pure): which instants Clarifai scores in a file, and which of the whole
video's instants each chunk holds."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sampling import Grid, clarifai_grid, global_grid

pytestmark = pytest.mark.pure

F = Fraction


def test_a_grid_counts_from_its_first_instant_by_its_step() -> None:
    """Grid(first, step, n) is n instants: first, first + step, ..."""
    assert Grid(F(1, 4), F(7, 10), 3).times() == [F(1, 4), F(19, 20), F(33, 20)]
    assert Grid(F(1, 2), F(1), 0).times() == []


def test_clarifai_samples_the_middle_of_each_interval_inside_the_file() -> None:
    """3.2 s at 1000 ms: 0.5, 1.5, 2.5 s; at 250 ms the first instant is 0.125 s."""
    assert clarifai_grid(F(32, 10), 1000) == Grid(F(1, 2), F(1), 3)
    assert clarifai_grid(F(1), 250) == Grid(F(1, 8), F(1, 4), 4)


def test_an_instant_on_the_files_end_is_not_inside_it() -> None:
    """2.5 s at 1000 ms: 0.5 and 1.5 s (2.5 s is where the file ends); a tick longer adds it."""
    assert clarifai_grid(F(5, 2), 1000).count == 2
    assert clarifai_grid(F(5, 2) + F(1, 90_000), 1000).count == 3


def test_a_file_shorter_than_half_an_interval_still_gets_one_sample() -> None:
    """0.3 s, or exactly half an interval, or nothing at all, at 1000 ms: one sample at 0.5 s."""
    for duration in (F(3, 10), F(1, 2), F(0)):
        assert clarifai_grid(duration, 1000) == Grid(F(1, 2), F(1), 1)


def test_a_chunk_holds_the_whole_videos_instants_in_its_span() -> None:
    """A chunk from 9.3 s to 20.1 s holds 9.5 ... 19.5 s, as times from its first frame."""
    assert global_grid(F(93, 10), F(201, 10), 1000) == Grid(F(1, 5), F(1), 11)


def test_an_instant_on_a_cut_belongs_to_the_chunk_that_starts_there() -> None:
    """A cut at 2.5 s (an instant at 1000 ms): the chunk before ends with 1.5 s, the chunk
    after starts with 2.5 s, at its own time 0."""
    assert global_grid(F(0), F(5, 2), 1000) == Grid(F(1, 2), F(1), 2)
    assert global_grid(F(5, 2), F(5), 1000) == Grid(F(0), F(1), 3)


def test_only_the_first_chunk_is_owed_a_sample() -> None:
    """The first chunk, even 0.3 s long, holds the video's first instant; a later chunk with no
    instant in its span holds none; an empty first chunk none either."""
    assert global_grid(F(0), F(3, 10), 1000) == Grid(F(1, 2), F(1), 1)
    assert global_grid(F(26, 10), F(34, 10), 1000).count == 0
    assert global_grid(F(0), F(0), 1000).count == 0


def test_a_chunk_past_the_first_instant_counts_from_its_own_start() -> None:
    """A chunk from 0.2 s to 1.7 s at 500 ms holds 0.25, 0.75, 1.25 s (k0 = 0), as 0.05 ..."""
    assert global_grid(F(1, 5), F(17, 10), 500) == Grid(F(1, 20), F(1, 2), 3)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(1, 40_000), max_size=8, unique=True),
       end=st.integers(1, 40_000), sample_ms=st.sampled_from([100, 250, 700, 1000, 3000]))
def test_chunks_together_sample_exactly_the_whole_videos_grid(cuts: list[int], end: int,
                                                               sample_ms: int) -> None:
    """However a video is cut (ms), its chunks' instants inside their spans, put back on the
    source clock, are the instants Clarifai samples inside the whole file, each once. The one
    instant outside a span is the first chunk's owed sample when that chunk is shorter than
    half an interval (merge drops it when a later chunk holds that instant)."""
    bounds = [F(0), *sorted(F(c, 1000) for c in cuts if c < end), F(end, 1000)]
    held = [(a + t, a, b) for a, b in zip(bounds, bounds[1:], strict=False)
            for t in global_grid(a, b, sample_ms).times()]
    inside = [t for t, _, b in held if t < b]
    outside = [a for t, a, b in held if t >= b]
    assert inside == [t for t in clarifai_grid(F(end, 1000), sample_ms).times() if t < F(end, 1000)]
    assert outside in ([], [0])
