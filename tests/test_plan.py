"""The planner is a pure function: any packet list -> chunks within limits, cut on keyframes."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.plan import Overhead, plan_chunks, whole_plan
from pipeline.types import Limits, Packet, Packets, PacketScan, PlannedChunk

pytestmark = pytest.mark.pure

OVERHEAD = Overhead()


@st.composite
def packet_lists(draw: st.DrawFn) -> PacketScan:
    """A decode-order packet list: GOPs of varied length and size, optional B-frame reordering."""
    # Ticks of 1/90000 s; frame durations for 24, 25, 29.97 and 60 fps.
    tick = draw(st.sampled_from([3750, 3600, 3003, 1500]))
    gops = draw(st.lists(st.tuples(st.integers(1, 90), st.integers(100, 120_000)),
                         min_size=1, max_size=60))
    reorder = draw(st.booleans())
    start = draw(st.sampled_from([0, 126_000, -3_000]))
    packets: list[Packet] = []
    n = 0
    for length, size in gops:
        times = [start + (n + i) * tick for i in range(length)]
        if reorder and length >= 3:
            times[1], times[2] = times[2], times[1]  # decode order != display order
        for i, t in enumerate(times):
            packets.append(Packet(t, tick, size * (4 if i == 0 else 1), i == 0))
        n += length
    return PacketScan(Packets.of(packets), time_base=Fraction(1, 90_000))


limits_st = st.builds(lambda b, s: Limits("bytes", b, s),
                      st.integers(150_000, 3_000_000), st.integers(1_000, 20_000))


@settings(max_examples=300, deadline=None)
@given(scan=packet_lists(), limits=limits_st)
def test_every_copied_chunk_fits_both_limits(scan: PacketScan, limits: Limits) -> None:
    """A chunk that is stream-copied is planned at or under the byte and duration limits."""
    for chunk in plan_chunks(scan, limits, OVERHEAD).chunks:
        if not chunk.reencode:
            assert chunk.expected_bytes <= limits.max_bytes
            assert chunk.duration <= limits.max_duration


@settings(max_examples=300, deadline=None)
@given(scan=packet_lists(), limits=limits_st)
def test_no_frame_is_lost_or_duplicated(scan: PacketScan, limits: Limits) -> None:
    """Chunks cover the decode-order packets exactly once, in order."""
    chunks = plan_chunks(scan, limits, OVERHEAD).chunks
    assert chunks[0].first_packet == 0
    assert chunks[-1].end_packet == len(scan.video)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.end_packet == b.first_packet
    assert sum(c.frames for c in chunks) == len(scan.video)


@settings(max_examples=300, deadline=None)
@given(scan=packet_lists(), limits=limits_st)
def test_cuts_fall_on_keyframes_and_times_are_contiguous(scan: PacketScan, limits: Limits) -> None:
    """Every chunk after the first starts at a keyframe; each ends where the next starts."""
    plan = plan_chunks(scan, limits, OVERHEAD)
    for chunk in plan.chunks[1:]:
        assert scan.video[chunk.first_packet].key
    for a, b in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert a.end == b.start
    assert plan.chunks[0].start == scan.origin
    assert plan.chunks[-1].end == scan.end


def intervals(scan: PacketScan) -> list[tuple[int, int, int, Fraction]]:
    """Each keyframe interval as (first packet, end packet, planned bytes, display length)."""
    video = list(scan.video)
    starts = [i for i, p in enumerate(video) if p.key and i > 0]
    bounds = list(zip([0, *starts], [*starts, len(video)], strict=True))
    firsts = [min(p.pts for p in video[a:b]) for a, b in bounds]
    stops = [*firsts[1:], scan.end_ticks]
    return [(a, b, sum(p.size for p in video[a:b]) + OVERHEAD.per_packet * (b - a),
             scan.seconds(stop - first))
            for (a, b), first, stop in zip(bounds, firsts, stops, strict=True)]


@settings(max_examples=200, deadline=None)
@given(scan=packet_lists(), limits=limits_st)
def test_only_oversized_keyframe_intervals_are_reencoded(scan: PacketScan,
                                                          limits: Limits) -> None:
    """A re-encode chunk holds only keyframe intervals that could not fit alone: no interval
    that a copy could carry is ever folded into a re-encoded stretch."""
    groups = intervals(scan)
    for chunk in plan_chunks(scan, limits, OVERHEAD).chunks:
        inside = [g for g in groups if chunk.first_packet <= g[0] < chunk.end_packet]
        too_big = [g[2] + OVERHEAD.fixed > limits.max_bytes or g[3] > limits.max_duration
                   for g in inside]
        assert all(too_big) if chunk.reencode else not any(too_big)


@settings(max_examples=200, deadline=None)
@given(scan=packet_lists(), limits=limits_st)
def test_greedy_packing_wastes_little(scan: PacketScan, limits: Limits) -> None:
    """Two neighbouring copied chunks could not have been one (the packing is greedy)."""
    chunks = plan_chunks(scan, limits, OVERHEAD).chunks
    for a, b in zip(chunks, chunks[1:], strict=False):
        if a.reencode or b.reencode:
            continue
        merged = a.expected_bytes + b.expected_bytes - OVERHEAD.fixed
        assert merged > limits.max_bytes or b.end - a.start > limits.max_duration


def test_a_keyframe_interval_over_the_budget_is_marked_for_reencoding() -> None:
    """One 5 MB interval under a 1 MB limit becomes a re-encode chunk; its neighbours copy."""
    sizes = [(30, 10_000), (30, 170_000), (30, 10_000)]
    packets = [Packet(g * 30 + i, 1, size, i == 0)
               for g, (n, size) in enumerate(sizes) for i in range(n)]
    scan = PacketScan(Packets.of(packets), time_base=Fraction(1, 25))
    plan = plan_chunks(scan, Limits("bytes", 1_000_000, 600_000))
    assert [c.reencode for c in plan.chunks] == [False, True, False]
    assert [c.frames for c in plan.chunks] == [30, 30, 30]


def test_duration_limit_cuts_a_small_video() -> None:
    """A tiny-bitrate 100 s video under a 30 s limit needs 4 chunks, each at most 30 s."""
    packets = [Packet(i, 1, 100, i % 5 == 0) for i in range(100)]
    plan = plan_chunks(PacketScan(Packets.of(packets), time_base=Fraction(1)),
                       Limits("bytes", 10_000_000, 30_000))
    assert [c.duration for c in plan.chunks] == [30, 30, 30, 10]


def gops(*sizes: int, frames: int = 1) -> list[Packet]:
    """One keyframe interval a size, `frames` frames of that size each, one tick a frame."""
    return [Packet(g * frames + i, 1, size, i == 0)
            for g, size in enumerate(sizes) for i in range(frames)]


def test_planned_bytes_are_the_packets_plus_the_container_overhead() -> None:
    """Each chunk's expected size is its packets' bytes, 24 B a packet and 16 KiB a file,
    counted exactly (whole numbers, not estimates)."""
    scan = PacketScan(Packets.of(gops(10_000, 20_000, frames=25)), time_base=Fraction(1, 25))
    plan = plan_chunks(scan, Limits("bytes", 400_000, 600_000))
    assert [c.expected_bytes for c in plan.chunks] == [25 * 10_024 + 16_384,
                                                       25 * 20_024 + 16_384]
    assert all(type(c.expected_bytes) is int for c in plan.chunks)


def test_a_run_that_fills_the_byte_budget_exactly_is_one_chunk() -> None:
    """The budget is inclusive: two intervals of 1,024 planned bytes fill 16,384 + 2,048 to the
    byte and travel together, after a fresh start, after a cut and after a re-encode."""
    scan = PacketScan(Packets.of(gops(1000, 1000, 1000, 1000, 5000, 1000, 1000)),
                      time_base=Fraction(1, 25))
    plan = plan_chunks(scan, Limits("bytes", 16_384 + 2 * 1024, 600_000))
    assert [(c.frames, c.reencode) for c in plan.chunks] == [(2, False), (2, False), (1, True),
                                                             (2, False)]
    assert [c.expected_bytes for c in plan.chunks] == [18_432, 18_432, 16_384 + 5024, 18_432]
    assert [c.index for c in plan.chunks] == [0, 1, 2, 3]


def test_neighbouring_oversized_intervals_share_one_reencode() -> None:
    """Two oversized intervals in a row are one re-encode chunk holding both (their bytes
    summed, one file's overhead), numbered in order with the chunks around it."""
    scan = PacketScan(Packets.of(gops(1000, 9000, 8000, 1000)), time_base=Fraction(1, 25))
    plan = plan_chunks(scan, Limits("bytes", 16_384 + 2 * 1024, 600_000))
    assert [(c.index, c.first_packet, c.end_packet, c.reencode) for c in plan.chunks] == [
        (0, 0, 1, False), (1, 1, 3, True), (2, 3, 4, False)]
    assert plan.chunks[1].expected_bytes == 9024 + 8024 + 16_384
    assert (plan.chunks[1].start, plan.chunks[1].end) == (Fraction(1, 25), Fraction(3, 25))


def test_a_plan_records_its_limits_origin_and_the_source_bytes() -> None:
    """The plan keeps the limits it was made for, starts at the first frame's time (not 0),
    counts video and kept audio bytes, and is a cut plan, not a whole one."""
    video = [Packet(50 + p.pts, 1, p.size, p.key) for p in gops(1000, 1000, 1000)]
    audio = Packets.of([Packet(50, 1, 300, True), Packet(51, 1, 200, True)])
    scan = PacketScan(Packets.of(video), audio, time_base=Fraction(1, 25),
                      audio_time_base=Fraction(1, 25))
    limits = Limits("bytes", 16_384 + 2048, 600_000)
    plan = plan_chunks(scan, limits)
    assert plan.limits == limits and plan.whole is False
    assert plan.origin == Fraction(2) and plan.chunks[0].start == Fraction(2)
    assert plan.total_bytes == 3000 + 500
    assert plan.lower_bound == 1


def test_kept_audio_counts_in_the_keyframe_interval_it_is_shown_in() -> None:
    """Audio packets (44.1 kHz ticks against 90 kHz video ticks) are planned into the interval
    whose display time holds them: before the first frame counts in the first, exactly on a
    keyframe in the interval that keyframe opens."""
    video = [Packet((g * 25 + i) * 3600, 3600, 10_000, i == 0)
             for g in range(3) for i in range(25)]  # intervals [0, 1), [1, 2), [2, 3) s
    audio = Packets.of([Packet(t, 1024, size, True) for t, size in [
        (-22_050, 1), (0, 10), (44_099, 100), (44_100, 1000), (88_199, 10_000),
        (88_200, 20_000), (130_000, 40_000)]])
    scan = PacketScan(Packets.of(video), audio, time_base=Fraction(1, 90_000),
                      audio_time_base=Fraction(1, 44_100))
    plan = plan_chunks(scan, Limits("bytes", 500_000, 600_000))  # one interval a chunk
    video_bytes = 25 * 10_024 + 16_384
    assert [c.expected_bytes - video_bytes for c in plan.chunks] == [
        1 + 10 + 100 + 3 * 24, 1000 + 10_000 + 2 * 24, 20_000 + 40_000 + 2 * 24]
    assert all(type(c.expected_bytes) is int for c in plan.chunks)


def test_a_whole_plan_is_the_untouched_file_as_one_chunk() -> None:
    """A video that fits is one chunk: every packet, first frame to end, the file's own size."""
    video = [Packet(50 + p.pts, 1, p.size, p.key) for p in gops(1000, 1000)]
    scan = PacketScan(Packets.of(video), time_base=Fraction(1, 25))
    limits = Limits("bytes", 10_000_000, 600_000)
    plan = whole_plan(scan, limits, 12_345)
    assert plan.whole is True and plan.limits == limits
    assert plan.chunks == (PlannedChunk(0, 0, 2, Fraction(2), Fraction(52, 25), 12_345),)
    assert plan.origin == Fraction(2) and plan.total_bytes == 12_345
    assert plan.reason == "fits both limits; sent whole, untouched"
