"""Plan: a pure function from packets and limits to the chunk cuts. No I/O here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.types import Limits, PacketScan, Plan, PlannedChunk


@dataclass(frozen=True)
class Overhead:
    """MP4 container bytes on top of the payload: measured 14.6-18.1 B per packet plus a fixed
    part (docs/chunking.md); both padded here, and every chunk is verified."""

    fixed: int = 16 * 1024
    per_packet: int = 24


@dataclass(frozen=True)
class _Group:
    """One keyframe interval: decode-order packets [first, end), displayed from `start` to
    `stop` (stream ticks; `stop` is the next interval's start, or the end of the stream)."""

    first: int
    end: int
    start: int
    stop: int
    payload: int  # packet bytes plus per-packet overhead


@dataclass(frozen=True)
class _Budget:
    """What one chunk may hold: payload bytes (the fixed overhead set aside) and display ticks
    (durations compared in whole ticks: t x time_base > max <=> t > floor(max / time_base))."""

    payload: int
    ticks: int

    def exceeded(self, payload: int, ticks: int) -> bool:
        return payload > self.payload or ticks > self.ticks


def plan_chunks(scan: PacketScan, limits: Limits, overhead: Overhead = Overhead()) -> Plan:
    """Pack whole keyframe intervals greedily by real bytes so each chunk fits both limits."""
    budget = _Budget(limits.max_bytes - overhead.fixed,
                     math.floor(limits.max_duration / scan.time_base))
    chunks: list[PlannedChunk] = []
    run: list[_Group] = []
    held = 0  # payload of the run
    for group in _groups(scan, overhead):
        if budget.exceeded(group.payload, group.stop - group.start):
            _flush(chunks, run, scan, overhead)
            _add_reencode(chunks, group, scan, overhead)
            held = 0
            continue
        if run and budget.exceeded(held + group.payload, group.stop - run[0].start):
            _flush(chunks, run, scan, overhead)
            held = 0
        run.append(group)
        held += group.payload
    _flush(chunks, run, scan, overhead)
    total = scan.video.total_bytes + scan.audio.total_bytes
    return Plan(limits=limits, whole=False, chunks=tuple(chunks), origin=scan.origin,
                total_bytes=total)


def whole_plan(scan: PacketScan, limits: Limits, size_bytes: int) -> Plan:
    """The plan for a video sent as it is: one chunk, the untouched file."""
    chunk = PlannedChunk(0, 0, len(scan.video), scan.origin, scan.end, size_bytes)
    return Plan(limits=limits, whole=True, chunks=(chunk,), origin=scan.origin,
                total_bytes=size_bytes, reason="fits both limits; sent whole, untouched")


def _groups(scan: PacketScan, overhead: Overhead) -> list[_Group]:
    """The keyframe intervals, from the packet columns (one pass of numpy, then one object an
    interval: ten hours at a 2 s GOP is 18,000 of them)."""
    video = scan.video
    n = len(video)
    starts = np.flatnonzero(video.key[1:]) + 1
    firsts_idx = np.concatenate(([0], starts))
    ends_idx = np.append(starts, n)
    firsts = np.minimum.reduceat(video.pts, firsts_idx)
    stops = np.append(firsts[1:], scan.end_ticks)
    payloads = (np.add.reduceat(video.size, firsts_idx) + overhead.per_packet
                * (ends_idx - firsts_idx) + _audio_bytes_per_group(scan, firsts, overhead))
    return list(map(_Group, firsts_idx.tolist(), ends_idx.tolist(), firsts.tolist(),
                    stops.tolist(), payloads.tolist()))


def _audio_bytes_per_group(scan: PacketScan, firsts: np.ndarray,
                           overhead: Overhead) -> np.ndarray:
    """Kept audio bytes, assigned to the keyframe interval they are displayed in (times
    compared exactly, in integers: audio ticks x num_a x den_v against video ticks x ...)."""
    totals = np.zeros(len(firsts), np.int64)
    audio = scan.audio
    if not len(audio):
        return totals
    ratio = scan.audio_time_base / scan.time_base
    slots = np.searchsorted(firsts * ratio.denominator, audio.pts * ratio.numerator,
                            side="right") - 1
    np.add.at(totals, np.maximum(slots, 0), audio.size + overhead.per_packet)
    return totals


def _flush(chunks: list[PlannedChunk], run: list[_Group], scan: PacketScan,
           overhead: Overhead) -> None:
    if not run:
        return
    payload = sum(g.payload for g in run)
    chunks.append(PlannedChunk(len(chunks), run[0].first, run[-1].end, scan.seconds(run[0].start),
                               scan.seconds(run[-1].stop), payload + overhead.fixed))
    run.clear()


def _add_reencode(chunks: list[PlannedChunk], group: _Group, scan: PacketScan,
                  overhead: Overhead) -> None:
    """An interval too big on its own is re-encoded; adjacent ones share one re-encode."""
    if chunks and chunks[-1].reencode and chunks[-1].end_packet == group.first:
        last = chunks.pop()
        chunks.append(PlannedChunk(last.index, last.first_packet, group.end, last.start,
                                   scan.seconds(group.stop), last.expected_bytes + group.payload,
                                   True))
        return
    chunks.append(PlannedChunk(len(chunks), group.first, group.end, scan.seconds(group.start),
                               scan.seconds(group.stop), group.payload + overhead.fixed, True))
