"""Checkpoint keys (pure): what a saved result depends on, so that a change redoes exactly what
it changes."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from pipeline.batch.store import RunKey
from pipeline.types import Chunk, Limits, ModelInfo

pytestmark = pytest.mark.pure

KEY = RunKey("clarifai", ModelInfo("nsfw-recognition", "NSFW"), 1000,
             Limits("bytes", 10_000_000, 600_000), False)
CHUNK = Chunk(1, "chunk-00001.mp4", Fraction(451, 15), Fraction(61067, 1000), 9_698_097, 930)


def test_a_run_key_names_backend_model_sampling_limits_and_audio() -> None:
    """The video's key: backend, the model's id (not its display name), sample_ms, the limits
    and whether audio was kept."""
    assert KEY.as_dict() == {
        "backend": "clarifai", "model": "nsfw-recognition", "sample_ms": 1000,
        "limits": {"mode": "bytes", "max_bytes": 10_000_000, "max_duration_ms": 600_000},
        "keep_audio": False}


def test_a_chunks_key_names_the_chunk_by_its_exact_times_and_frames() -> None:
    """A chunk's key: the checkpoint format, what predicted it, and the chunk itself as exact
    fractions of a second and a frame count (limits reach it through the cut)."""
    assert KEY.for_chunk(CHUNK) == {
        "format": 3, "backend": "clarifai", "model": "nsfw-recognition", "sample_ms": 1000,
        "start": "451/15", "end": "61067/1000", "frames": 930}


def test_every_field_of_the_run_key_changes_the_video_key() -> None:
    """Another backend, model, sampling, limit or audio choice is another run."""
    others = [dataclasses.replace(KEY, backend="local"),
              dataclasses.replace(KEY, model=ModelInfo("general-image-recognition", "NSFW")),
              dataclasses.replace(KEY, sample_ms=500),
              dataclasses.replace(KEY, limits=Limits("url", 10_000_000, 600_000)),
              dataclasses.replace(KEY, keep_audio=True)]
    assert all(other.as_dict() != KEY.as_dict() for other in others)
    assert KEY.as_dict() == dataclasses.replace(KEY, model=ModelInfo(
        "nsfw-recognition", "another name")).as_dict()


def test_a_chunk_cut_differently_has_another_key() -> None:
    """Moving either end of a chunk, or a different frame count, invalidates its result; its
    file name and index do not."""
    moved = [dataclasses.replace(CHUNK, start=Fraction(30)),
             dataclasses.replace(CHUNK, end=Fraction(61)),
             dataclasses.replace(CHUNK, frames=929)]
    assert all(KEY.for_chunk(c) != KEY.for_chunk(CHUNK) for c in moved)
    renamed = dataclasses.replace(CHUNK, index=5, path="elsewhere.mp4")
    assert KEY.for_chunk(renamed) == KEY.for_chunk(CHUNK)


COMPACT = dataclasses.replace(KEY, strategy=(("name", "compact"), ("proxy_size", 320),
                                             ("crf", 30)))


def test_a_strategy_other_than_copy_is_part_of_both_keys() -> None:
    """compact and frames name themselves and their settings in the video's and each chunk's
    key; copy adds nothing, so results saved before strategies existed stay done."""
    assert COMPACT.as_dict() == KEY.as_dict() | {
        "strategy": {"name": "compact", "proxy_size": 320, "crf": 30}}
    assert COMPACT.for_chunk(CHUNK) == KEY.for_chunk(CHUNK) | {
        "strategy": {"name": "compact", "proxy_size": 320, "crf": 30}}
    assert "strategy" not in KEY.as_dict() and "strategy" not in KEY.for_chunk(CHUNK)


def test_another_strategy_setting_is_another_run() -> None:
    """A smaller proxy, or the frames strategy, redoes the video and each of its chunks."""
    smaller = dataclasses.replace(COMPACT, strategy=(("name", "compact"), ("proxy_size", 256),
                                                     ("crf", 30)))
    frames = dataclasses.replace(KEY, strategy=(("name", "frames"), ("image_size", 320),
                                                ("image_quality", 90),
                                                ("images_per_request", 128)))
    keys = [k.as_dict() for k in (KEY, COMPACT, smaller, frames)]
    chunk_keys = [k.for_chunk(CHUNK) for k in (KEY, COMPACT, smaller, frames)]
    assert all(keys[i] != keys[j] and chunk_keys[i] != chunk_keys[j]
               for i in range(4) for j in range(i + 1, 4))
