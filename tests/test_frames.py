"""Sampling: one frame per interval, the frame shown at the interval's middle."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from media import ffmpeg

from pipeline import sampling
from pipeline.media import decode

RATE = 10  # frames per second of the counter video


@pytest.fixture(scope="module")
def counter_video(media_dir: Path) -> Path:
    """20 s at 10 fps whose frame n is a flat grey of luma 20 + 8 * (n mod 25): the frame number
    can be read back from any decoded sample (lossless coding keeps the levels exact)."""
    path = media_dir / "counter.mp4"
    if not path.exists():
        ffmpeg("-f", "lavfi", "-i", f"nullsrc=s=64x64:r={RATE}", "-vf",
               "geq=lum='20+8*mod(N,25)':cb=128:cr=128", "-t", "20",
               "-c:v", "libx264", "-qp", "0", "-g", "10", "-bf", "2", "-pix_fmt", "yuv420p",
               str(path))
    return path


def frame_number_mod_25(rgb: np.ndarray) -> int:
    luma = float(rgb.mean()) * 219 / 255 + 16  # limited-range YUV -> full-range RGB, undone
    return int(round((luma - 20) / 8)) % 25


def test_clarifai_grid_is_the_middle_of_each_interval() -> None:
    """A 3.2 s file at 1000 ms: instants 0.5, 1.5, 2.5 (3.5 is past the end)."""
    grid = sampling.clarifai_grid(Fraction(32, 10), 1000)
    assert grid.times() == [Fraction(1, 2), Fraction(3, 2), Fraction(5, 2)]


def test_global_grid_continues_across_a_chunk_boundary() -> None:
    """A chunk from 9.3 s to 20.1 s samples 9.5, 10.5, ... 19.5 of the whole video's grid."""
    grid = sampling.global_grid(Fraction(93, 10), Fraction(201, 10), 1000)
    assert [Fraction(93, 10) + t for t in grid.times()] == [Fraction(2 * k + 1, 2)
                                                             for k in range(9, 20)]


@pytest.mark.parametrize("sample_ms", [1000, 500, 2300])
def test_exact_decode_returns_the_frame_shown_at_each_instant(counter_video: Path,
                                                               sample_ms: int) -> None:
    """The decoded sample at instant t is frame floor(t * fps) of the source."""
    grid = sampling.clarifai_grid(Fraction(20), sample_ms)
    got = [frame_number_mod_25(f) for f in decode.decode(str(counter_video), grid)]
    expected = [int(t * RATE) % 25 for t in grid.times()]
    assert got == expected


def test_fast_decode_is_at_most_a_few_frames_early(counter_video: Path) -> None:
    """Skipping non-reference frames may give an earlier frame, never a later one, never >3."""
    grid = sampling.clarifai_grid(Fraction(20), 1000)
    got = [frame_number_mod_25(f) for f in decode.decode(str(counter_video), grid, fast=True)]
    for t, n in zip(grid.times(), got, strict=True):
        assert (int(t * RATE) - n) % 25 in (0, 1, 2, 3)


def test_decode_with_an_offset_grid_reads_the_right_frames(counter_video: Path) -> None:
    """A grid starting 0.25 s in with a 700 ms step still lands on the right frames."""
    grid = sampling.Grid(Fraction(1, 4), Fraction(7, 10), 20)
    got = [frame_number_mod_25(f) for f in decode.decode(str(counter_video), grid)]
    assert got == [int(t * RATE) % 25 for t in grid.times()]
