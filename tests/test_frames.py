"""Sampling: one frame per interval, the frame shown at the interval's middle."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import media
import numpy as np
import pytest
from media import ffmpeg

from pipeline import sampling
from pipeline.backends import embedded
from pipeline.backends.models import NSFW
from pipeline.media import decode

pytestmark = pytest.mark.integration

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


FPS = 25


@pytest.fixture(scope="module")
def moving_video(media_dir: Path) -> Path:
    """20 s at 25 fps of a moving, noisy pattern; no B-frames (every frame a reference frame, so
    the fast decoder skips none): open_nsfw scores each frame differently."""
    path = media_dir / "moving.mp4"
    if not path.exists():
        media.testsrc(path, seconds=20, size="320x240", rate=FPS, extra_vf="noise=alls=40:allf=t",
                codec=["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "25",
                       "-b:v", "1500k", "-pix_fmt", "yuv420p"])
    return path


def sfw_of_every_frame(video: Path) -> np.ndarray:
    """open_nsfw's sfw value for each frame of `video`, decoded apart from the pipeline: every
    frame at its own rate, with the model's resize and crop."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-vf",
                          "scale=256:256:flags=bilinear,crop=224:224", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 224, 224, 3)
    classifier = embedded.shared(NSFW)
    return np.concatenate([classifier.scores(list(frames[i:i + 16]))[:, 0]
                           for i in range(0, len(frames), 16)])


def test_every_sample_scores_the_frame_its_time_names(moving_video: Path,
                                                      tmp_path: Path) -> None:
    """The local backend's value at time t is the score of the frame shown at t (frame
    floor(t x fps)), not of a frame half an interval away; one chunk and many chunks give the
    same timeline, value for value."""
    exact = sfw_of_every_frame(moving_video)
    timelines = []
    for limit in ("10000000", "600000"):
        out = tmp_path / limit
        done = subprocess.run([sys.executable, "-m", "pipeline", "run", str(moving_video),
                               "--out", str(out), "--max-bytes", limit, "--no-progress"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        (path,) = out.glob("*/timeline.json")
        timelines.append(json.loads(path.read_text()))
    whole, cut = timelines
    assert len(whole["chunks"]) == 1 and len(cut["chunks"]) >= 3
    assert whole["frames"] == cut["frames"]
    for frame in whole["frames"]:
        n = frame["frame_info"]["time"] * FPS // 1000
        sfw = next(c["value"] for c in frame["data"]["concepts"] if c["name"] == "sfw")
        near = range(max(0, n - FPS // 2), min(len(exact), n + FPS // 2 + 1))
        closest = min(near, key=lambda k: abs(exact[k] - sfw))
        assert closest == n and abs(exact[n] - sfw) < 1e-4, (frame["frame_info"], closest, n)
