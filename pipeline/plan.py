"""Plan: a pure function from packets and limits to the chunk cuts. No I/O here."""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pipeline.types import Limits, PacketScan, Plan, PlannedChunk


@dataclass(frozen=True)
class Overhead:
    """MP4 container bytes on top of the payload: measured 14.6-18.1 B per packet plus a fixed
    part (shared/reference/measured-facts.md); both padded here, and every chunk is verified."""

    fixed: int = 16 * 1024
    per_packet: int = 24


@dataclass(frozen=True)
class _Group:
    """One keyframe interval: decode-order packets [first, end), displayed from `start`."""

    first: int
    end: int
    start: Fraction
    stop: Fraction  # start of the next interval, or the end of the stream
    payload: int  # packet bytes plus per-packet overhead


def plan_chunks(scan: PacketScan, limits: Limits, overhead: Overhead = Overhead()) -> Plan:
    """Pack whole keyframe intervals greedily by real bytes so each chunk fits both limits."""
    groups = _groups(scan, overhead)
    chunks: list[PlannedChunk] = []
    run: list[_Group] = []
    for group in groups:
        if _too_big(group.payload, group.stop - group.start, limits, overhead):
            _flush(chunks, run, overhead)
            _add_reencode(chunks, group, overhead)
        elif run and _too_big(sum(g.payload for g in run) + group.payload,
                              group.stop - run[0].start, limits, overhead):
            _flush(chunks, run, overhead)
            run.append(group)
        else:
            run.append(group)
    _flush(chunks, run, overhead)
    total = sum(p.size for p in scan.video) + sum(p.size for p in scan.audio)
    return Plan(limits=limits, whole=False, chunks=tuple(chunks), origin=scan.origin,
                total_bytes=total)


def whole_plan(scan: PacketScan, limits: Limits, size_bytes: int) -> Plan:
    """The plan for a video sent as it is: one chunk, the untouched file."""
    chunk = PlannedChunk(0, 0, len(scan.video), scan.origin, scan.end, size_bytes)
    return Plan(limits=limits, whole=True, chunks=(chunk,), origin=scan.origin,
                total_bytes=size_bytes, reason="fits both limits; sent whole, untouched")


def _too_big(payload: int, duration: Fraction, limits: Limits, overhead: Overhead) -> bool:
    return payload + overhead.fixed > limits.max_bytes or duration > limits.max_duration


def _groups(scan: PacketScan, overhead: Overhead) -> list[_Group]:
    video = scan.video
    starts = [i for i, p in enumerate(video) if p.key and i > 0]
    bounds = list(zip([0, *starts], [*starts, len(video)], strict=True))
    pts = list(map(operator.itemgetter(0), video))
    firsts = [min(pts[a:b]) for a, b in bounds]
    ends = [*firsts[1:], scan.end_ticks]
    audio = _audio_bytes_per_group(scan, firsts, overhead)
    prefix = [0, *itertools.accumulate(map(operator.itemgetter(2), video))]
    per, seconds = overhead.per_packet, scan.seconds
    return [
        _Group(a, b, seconds(first), seconds(stop), prefix[b] - prefix[a] + per * (b - a) + extra)
        for (a, b), first, stop, extra in zip(bounds, firsts, ends, audio, strict=True)
    ]


def _audio_bytes_per_group(scan: PacketScan, firsts: Sequence[int],
                           overhead: Overhead) -> list[int]:
    """Kept audio bytes, assigned to the keyframe interval they are displayed in."""
    totals = [0] * len(firsts)
    ratio = scan.audio_time_base / scan.time_base
    for packet in scan.audio:
        slot = max(0, bisect.bisect_right(firsts, packet.pts * ratio) - 1)
        totals[slot] += packet.size + overhead.per_packet
    return totals


def _flush(chunks: list[PlannedChunk], run: list[_Group], overhead: Overhead) -> None:
    if not run:
        return
    payload = sum(g.payload for g in run)
    chunks.append(PlannedChunk(len(chunks), run[0].first, run[-1].end, run[0].start,
                               run[-1].stop, payload + overhead.fixed))
    run.clear()


def _add_reencode(chunks: list[PlannedChunk], group: _Group, overhead: Overhead) -> None:
    """An interval too big on its own is re-encoded; adjacent ones share one re-encode."""
    if chunks and chunks[-1].reencode and chunks[-1].end_packet == group.first:
        last = chunks.pop()
        chunks.append(PlannedChunk(last.index, last.first_packet, group.end, last.start,
                                   group.stop, last.expected_bytes + group.payload, True))
        return
    chunks.append(PlannedChunk(len(chunks), group.first, group.end, group.start, group.stop,
                               group.payload + overhead.fixed, True))
