"""Merging chunk answers into one timeline (pure), and a chunk the API refuses as too large
re-split and merged back on the source clock (predict_chunk)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from fractions import Fraction

import pytest

from pipeline.errors import OverLimitError
from pipeline.merge import merge, place
from pipeline.predict import MAX_RESPLITS, halved, predict_chunk
from pipeline.sampling import clarifai_grid
from pipeline.types import (
    Chunk,
    ChunkResult,
    Concept,
    Frame,
    Limits,
    Media,
    ModelInfo,
    VideoFile,
    to_ms,
)

pytestmark = pytest.mark.pure

SFW = (Concept("ai_RT20lm2Q", "sfw", 0.9),)


def chunk(index: int, start: str, end: str, size: int = 1) -> Chunk:
    return Chunk(index, f"c{index}.mp4", Fraction(start), Fraction(end), size, 1)


def frames_at(*times: int) -> tuple[Frame, ...]:
    return tuple(Frame(t, SFW) for t in times)


def tagged(tag: str, *times: int) -> tuple[Frame, ...]:
    """Frames whose one concept names where they came from."""
    return tuple(Frame(t, (Concept(tag, f"{tag}@{t}", 0.5),)) for t in times)


def sources(frames: list[Frame]) -> list[tuple[int, str]]:
    return [(f.time_ms, f.concepts[0].name) for f in frames]


def test_chunk_local_times_are_offset_by_the_measured_start() -> None:
    """Chunk starts 0 and 93.4 s: local 500 ms becomes 500 and 93900 ms."""
    chunks = [chunk(0, "0", "467/5"), chunk(1, "467/5", "190")]
    results = {0: ChunkResult(0, frames_at(500, 1500)), 1: ChunkResult(1, frames_at(500, 1500))}
    assert [f.time_ms for f in merge(chunks, results)] == [500, 1500, 93900, 94900]


def test_frames_past_the_next_chunks_start_are_dropped() -> None:
    """A server that returns an instant past its chunk's end does not duplicate the boundary."""
    chunks = [chunk(0, "0", "2"), chunk(1, "2", "4")]
    results = {0: ChunkResult(0, frames_at(0, 1000, 2000)), 1: ChunkResult(1, frames_at(0, 1000))}
    assert [f.time_ms for f in merge(chunks, results)] == [0, 1000, 2000, 3000]


def test_times_strictly_increase_whatever_order_results_arrive() -> None:
    """Results are ordered by chunk start, not by dictionary or arrival order."""
    chunks = [chunk(1, "5", "10"), chunk(0, "0", "5")]
    results = {1: ChunkResult(1, frames_at(2500, 500)), 0: ChunkResult(0, frames_at(4500, 500))}
    times = [f.time_ms for f in merge(chunks, results)]
    assert times == sorted(set(times)) == [500, 4500, 5500, 7500]


def test_placing_offsets_times_keeps_concepts_and_names_the_source_clock() -> None:
    """place() moves a chunk-clock answer by the chunk's start, concepts untouched, and says
    the frames are now on the source clock."""
    placed = place(chunk(3, "10", "14"), ChunkResult(3, tagged("c3", 500, 1500), attempts=2))
    assert sources(list(placed.frames)) == [(10_500, "c3@500"), (11_500, "c3@1500")]
    assert (placed.index, placed.attempts, placed.clock) == (3, 2, "source")


def test_a_result_already_on_the_source_clock_is_not_moved_again() -> None:
    """A local backend's (or a re-split chunk's) source-clock answer is placed as it is."""
    result = ChunkResult(3, frames_at(10_500, 11_500), clock="source")
    assert place(chunk(3, "10", "14"), result) is result


def test_each_chunk_loses_only_what_reaches_its_next_neighbours_start() -> None:
    """With three chunks [0, 2), [2, 4), [4, 6) s, a frame placed at or past the start of the
    chunk that follows is that chunk's to report: dropped from the earlier one, whichever
    chunk it is; the later chunk's own frame is kept."""
    chunks = [chunk(0, "0", "2"), chunk(1, "2", "4"), chunk(2, "4", "6")]
    results = {0: ChunkResult(0, tagged("c0", 500, 1500, 2000, 2100)),
               1: ChunkResult(1, tagged("c1", 500, 1500, 2000)),
               2: ChunkResult(2, tagged("c2", 500))}
    assert sources(merge(chunks, results)) == [
        (500, "c0@500"), (1500, "c0@1500"), (2500, "c1@500"), (3500, "c1@1500"),
        (4500, "c2@500")]


def test_a_repeated_instant_is_reported_once_and_later_frames_still_come() -> None:
    """Two frames at one instant in a chunk: the first is kept, the rest of the chunk follows."""
    results = {0: ChunkResult(0, tagged("a", 500, 500, 1500) + tagged("b", 500))}
    assert sources(merge([chunk(0, "0", "2")], results)) == [(500, "a@500"), (1500, "a@1500")]


def test_a_dropped_frame_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Each frame dropped at a boundary leaves one debug line naming the chunk and the time."""
    chunks = [chunk(0, "0", "2"), chunk(1, "2", "4")]
    results = {0: ChunkResult(0, frames_at(500, 2000)), 1: ChunkResult(1, frames_at(500))}
    with caplog.at_level(logging.DEBUG, logger="pipeline.merge"):
        merge(chunks, results)
    assert caplog.messages == ["chunk 0: frame at 2000 ms overlaps a neighbour; dropped"]


# predict_chunk: `SizeLimitedAPI` stands in for Clarifai's API only (this is a pure test of the
# re-split and re-offset logic; the real backends are run against `serve` in test_serve.py and
# test_clarifai_backend.py). `recut` stands in for segment.resplit: equal pieces by time.

class SizeLimitedAPI:
    """Refuses a chunk over `max_bytes` as too large (having spent `refusal_attempts`
    requests), else answers one frame per interval on the chunk's own clock, as Clarifai does."""

    name = "clarifai"
    model = ModelInfo("m", "m")

    def __init__(self, max_bytes: int, refusal_attempts: int = 2) -> None:
        self.max_bytes = max_bytes
        self.refusal_attempts = refusal_attempts
        self.sent: list[tuple[str, str | None]] = []

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        self.sent.append((chunk.path, media.path if isinstance(media, VideoFile) else None))
        if chunk.size_bytes > self.max_bytes:
            error = OverLimitError(f"{chunk.path}: too large", code=10000)
            error.attempts = self.refusal_attempts
            raise error
        grid = clarifai_grid(chunk.duration, sample_ms)
        return ChunkResult(chunk.index, tagged(chunk.path, *(to_ms(t) for t in grid.times())))

    def close(self) -> None:
        pass


class Cutter:
    """Cuts a chunk into equal pieces by time, as few as keep each within the byte limit."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Limits]] = []

    def __call__(self, whole: Chunk, limits: Limits) -> list[Chunk]:
        self.calls.append((whole.path, limits))
        n = -(-whole.size_bytes // limits.max_bytes)
        step = whole.duration / n
        return [Chunk(i, f"{whole.path}/{i}", whole.start + i * step,
                      whole.start + (i + 1) * step, whole.size_bytes // n, whole.frames // n)
                for i in range(n)]


class Opened:
    """An opener that records each chunk's media being taken and let go."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @contextlib.contextmanager
    def __call__(self, piece: Chunk) -> Iterator[Media]:
        self.log.append(f"open {piece.path}")
        yield VideoFile(piece.path)
        self.log.append(f"close {piece.path}")


LIMITS = Limits("bytes", 10_000_000, 600_000)


def test_a_chunk_the_api_takes_is_answered_on_the_source_clock() -> None:
    """One request with the chunk's own media; its frames land at the chunk's start plus the
    local times; the media is let go after the answer."""
    api, opener = SizeLimitedAPI(10_000_000), Opened()
    result = predict_chunk(api, chunk(4, "10", "13", 9_000_000), 1000, LIMITS, Cutter(), opener)
    assert sources(list(result.frames)) == [(10_500, "c4.mp4@500"), (11_500, "c4.mp4@1500"),
                                            (12_500, "c4.mp4@2500")]
    assert (result.index, result.attempts, result.clock) == (4, 1, "source")
    assert api.sent == [("c4.mp4", "c4.mp4")]
    assert opener.log == ["open c4.mp4", "close c4.mp4"]


def test_a_chunk_refused_as_too_large_is_resplit_and_merged_on_the_source_clock() -> None:
    """The API refuses 9 MB: the chunk is cut under half its size and length, each piece is
    sent with its own media, and the pieces' frames come back as the chunk's, on the source
    clock, counting every request (the refused ones too)."""
    api, cutter, opener = SizeLimitedAPI(5_000_000), Cutter(), Opened()
    result = predict_chunk(api, chunk(7, "60", "64", 9_000_000), 1000, LIMITS, cutter, opener)
    assert cutter.calls == [("c7.mp4", Limits("bytes", 4_500_000, 2000))]
    assert api.sent == [("c7.mp4", "c7.mp4"), ("c7.mp4/0", "c7.mp4/0"),
                        ("c7.mp4/1", "c7.mp4/1")]
    assert sources(list(result.frames)) == [
        (60_500, "c7.mp4/0@500"), (61_500, "c7.mp4/0@1500"),
        (62_500, "c7.mp4/1@500"), (63_500, "c7.mp4/1@1500")]
    assert (result.index, result.attempts, result.clock) == (7, 2 + 1 + 1, "source")
    assert opener.log[-2:] == ["open c7.mp4/1", "close c7.mp4/1"]


def test_a_resplit_is_logged_with_the_chunk_its_size_and_the_new_budget(
        caplog: pytest.LogCaptureFixture) -> None:
    """One warning per refusal says which chunk, how big, why, and the smaller budget."""
    with caplog.at_level(logging.WARNING, logger="pipeline.predict"):
        predict_chunk(SizeLimitedAPI(5_000_000), chunk(7, "60", "64", 9_000_000), 1000, LIMITS,
                      Cutter(), Opened())
    assert caplog.messages == ["chunk 7 (9000000 bytes) was refused as too large (c7.mp4: too "
                               "large); re-splitting it under 4500000 bytes"]


def test_resplitting_gives_up_after_three_rounds_with_the_apis_refusal() -> None:
    """A chunk refused at every size is cut three times, ever smaller, then the refusal
    reaches the caller."""
    api, cutter = SizeLimitedAPI(0), Cutter()
    with pytest.raises(OverLimitError, match="too large"):
        predict_chunk(api, chunk(0, "0", "8", 8_000_000), 1000, LIMITS, cutter, Opened())
    assert MAX_RESPLITS == 3
    assert [limits for _, limits in cutter.calls] == [
        Limits("bytes", 4_000_000, 4000), Limits("bytes", 2_000_000, 2000),
        Limits("bytes", 1_000_000, 1000)]
    assert len(api.sent) == 4


def test_halving_takes_half_the_chunk_or_the_limit_whichever_is_smaller() -> None:
    """Half the chunk's bytes and length when it is within the limits, half the limits when
    it is not, never under 100 kB and 1 s; the mode is kept."""
    url = Limits("url", 80_000_000, 600_000)
    assert halved(url, chunk(0, "0", "300", 60_000_000)) == Limits("url", 30_000_000, 150_000)
    assert halved(Limits("bytes", 1_000_000, 10_000), chunk(0, "0", "30", 3_000_000)) == \
        Limits("bytes", 500_000, 5000)
    assert halved(LIMITS, chunk(0, "0", "3/2", 150_000)) == Limits("bytes", 100_000, 1000)
    assert halved(LIMITS, chunk(0, "0", "2501/1000", 250_001)) == \
        Limits("bytes", 125_000, 1250)
