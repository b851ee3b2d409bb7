"""Write MP4 chunks straight from a source MP4's sample table: a new `moov` for the chunk's
video samples, then their bytes copied in the kernel (copy_file_range), never through a muxer.

ffmpeg's segment muxer reads and re-writes every packet of the file (~5x `cp` on the benchmark
machine); this costs little more than copying the chunk's bytes. Used only where the sample
table was read exactly (mp4.sample_table); everything else goes through ffmpeg."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.types import SampleTable

_MOVIE_TIMESCALE = 1000
_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True)
class Layout:
    """One chunk's bytes, described: `head` (ftyp, moov, the mdat header) and then, in order,
    the source's byte ranges `runs` (offset, length, samples) that make up the media data."""

    head: bytes
    runs: list[tuple[int, int, int]]

    @property
    def size(self) -> int:
        return len(self.head) + sum(length for _, length, _ in self.runs)


def layout(table: SampleTable, first: int, end: int) -> Layout:
    """The chunk of samples [first, end) of `table` (decode order, starting on a keyframe),
    exactly as write_chunk and chunk_bytes produce it; its size costs no copying."""
    runs = _runs(table, first, end)
    header = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    draft = _moov(table, first, end, runs, 0)
    # stco is the last box of moov and its size does not depend on the offsets it holds.
    stco = _stco(runs, len(header) + len(draft) + 8)
    moov = draft[:len(draft) - len(stco)] + stco
    payload = sum(length for _, length, _ in runs)
    return Layout(header + moov + struct.pack(">I4s", 8 + payload, b"mdat"), runs)


def write_chunk(src_fd: int, table: SampleTable, first: int, end: int, path: str) -> None:
    """Write samples [first, end) of `table` to `path` (the bytes copied in the kernel)."""
    plan = layout(table, first, end)
    with open(path, "wb") as out:
        out.write(plan.head)
        out.flush()
        _copy_runs(src_fd, out.fileno(), plan.runs)


def chunk_bytes(src_fd: int, table: SampleTable, first: int, end: int) -> bytes:
    """The same chunk as write_chunk writes, built in memory (for sending without a file)."""
    plan = layout(table, first, end)
    data = bytearray(plan.size)
    data[:len(plan.head)] = plan.head
    at = len(plan.head)
    view = memoryview(data)
    for offset, length, _ in plan.runs:
        got = os.preadv(src_fd, [view[at:at + length]], offset)
        if got != length:
            raise OSError("source ended before the chunk's data was read")
        at += length
    return bytes(data)


def _runs(table: SampleTable, first: int, end: int) -> list[tuple[int, int, int]]:
    """Consecutive samples that are also contiguous in the file: (offset, bytes, samples)."""
    offsets, sizes = table.offsets[first:end], table.sizes[first:end]
    if not len(sizes):
        return []
    breaks = np.flatnonzero(offsets[1:] != offsets[:-1] + sizes[:-1]) + 1
    starts = np.concatenate(([0], breaks))
    lengths = np.add.reduceat(sizes, starts)
    counts = np.diff(np.append(starts, len(sizes)))
    return list(zip(offsets[starts].tolist(), lengths.tolist(), counts.tolist(), strict=True))


_SPAN = 64 << 20  # read at most this much of the source at once
_IOV = 1000  # writev takes at most IOV_MAX (1024) pieces


def _copy_runs(src: int, dst: int, runs: Sequence[tuple[int, int, int]]) -> None:
    """Copy runs that are close together in the source (video samples interleaved with audio)
    by reading their whole span once and writing just the runs with writev; a run far from the
    others is copied in the kernel. On the 30-minute benchmark file (54,000 runs: audio between
    every two video samples) a copy_file_range a run cost 0.05-0.1 s more system time than this
    on a quiet machine (a syscall a run)."""
    i = 0
    while i < len(runs):
        j, start = i, runs[i][0]
        while j < len(runs) and runs[j][0] + runs[j][1] - start <= _SPAN:
            j += 1
        if j == i:  # one run larger than the span
            _copy(src, dst, runs[i][0], runs[i][1])
            i += 1
            continue
        group = runs[i:j]
        if len(group) == 1:
            _copy(src, dst, group[0][0], group[0][1])
        else:
            _write_group(src, dst, group)
        i = j


_buffers = threading.local()


def _buffer(size: int) -> memoryview:
    """A per-thread read buffer, reused: fresh 10 MB allocations cost a page fault a page."""
    held: bytearray | None = getattr(_buffers, "data", None)
    if held is None or len(held) < size:
        held = bytearray(max(size, 16 << 20))
        _buffers.data = held
    return memoryview(held)[:size]


def _write_group(src: int, dst: int, group: Sequence[tuple[int, int, int]]) -> None:
    """Read the group's whole span of the source once and write just its runs."""
    start = group[0][0]
    span = _buffer(group[-1][0] + group[-1][1] - start)
    got = os.preadv(src, [span], start)
    if got != len(span):
        raise OSError("source ended before the chunk's data was read")
    pieces = [span[o - start:o - start + n] for o, n, _ in group]
    for k in range(0, len(pieces), _IOV):
        _write_all(dst, pieces[k:k + _IOV])


def _write_all(dst: int, pieces: list[memoryview]) -> None:
    at = 0
    while at < len(pieces):
        done = os.writev(dst, pieces[at:])
        while at < len(pieces) and done >= len(pieces[at]):
            done -= len(pieces[at])
            at += 1
        if done:  # a partial write inside one piece
            pieces[at] = pieces[at][done:]


def _copy(src: int, dst: int, offset: int, length: int) -> None:
    while length > 0:
        try:
            done = os.copy_file_range(src, dst, length, offset)
        except OSError:
            done = os.write(dst, os.pread(src, min(length, 1 << 20), offset))
        if done <= 0:
            raise OSError("source ended before the chunk's data was copied")
        offset += done
        length -= done


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _moov(table: SampleTable, first: int, end: int, runs: Sequence[tuple[int, int, int]],
          data_start: int) -> bytes:
    dts0 = int(table.dts[first])
    pts, durations = table.pts[first:end], table.durations[first:end]
    media_time = int(pts.min()) - dts0
    shown = int((pts + durations).max()) - dts0 - media_time
    media_duration = int(durations.sum())
    movie_ms = shown * _MOVIE_TIMESCALE // table.timescale
    trak = _box(b"trak", _tkhd(table.tkhd, movie_ms),
                _box(b"edts", _full(b"elst", 0, 0, struct.pack(">IIiI", 1, movie_ms,
                                                               media_time, 0x10000))),
                _box(b"mdia", _mdhd(table, media_duration), _hdlr(),
                     _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), _dinf(),
                          _stbl(table, first, end, runs, data_start))))
    mvhd = _full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, _MOVIE_TIMESCALE, movie_ms),
                 struct.pack(">IH", 0x10000, 0x100), bytes(10), _IDENTITY, bytes(24),
                 struct.pack(">I", 2))
    return _box(b"moov", mvhd, trak)


def _tkhd(source: bytes, duration_ms: int) -> bytes:
    """The source's track header (its display size and rotation matrix), retimed, as track 1."""
    version = source[0]
    width_height = source[-8:]
    matrix = source[-44:-8]
    return _full(b"tkhd", 0, 3, struct.pack(">IIII", 0, 0, 1, 0),
                 struct.pack(">I", duration_ms), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                 matrix, width_height) if version in (0, 1) else b""


def _mdhd(table: SampleTable, duration: int) -> bytes:
    if duration < 1 << 32:
        return _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, table.timescale, duration,
                                                table.language, 0))
    return _full(b"mdhd", 1, 0, struct.pack(">QQIQHH", 0, 0, table.timescale, duration,
                                            table.language, 0))


def _hdlr() -> bytes:
    return _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")


def _dinf() -> bytes:
    return _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))


def _stbl(table: SampleTable, first: int, end: int, runs: Sequence[tuple[int, int, int]],
          data_start: int) -> bytes:
    count = end - first
    boxes = [_box(b"stsd", table.stsd),
             _full(b"stts", 0, 0, _run_length(table.durations[first:end], ">u4"))]
    shifts = table.pts[first:end] - table.dts[first:end]
    if shifts.any():
        signed = bool((shifts < 0).any())
        boxes.append(_full(b"ctts", 1 if signed else 0, 0,
                           _run_length(shifts, ">i4" if signed else ">u4")))
    keys = np.flatnonzero(table.keys[first:end]) + 1
    if len(keys) < count:
        boxes.append(_full(b"stss", 0, 0, struct.pack(">I", len(keys)),
                           keys.astype(">u4").tobytes()))
    boxes.append(_full(b"stsc", 0, 0, *_stsc(runs)))
    boxes.append(_full(b"stsz", 0, 0, struct.pack(">II", 0, count),
                       table.sizes[first:end].astype(">u4").tobytes()))
    boxes.append(_stco(runs, data_start))
    return _box(b"stbl", *boxes)


def _stco(runs: Sequence[tuple[int, int, int]], data_start: int) -> bytes:
    chunk_offsets, at = [], data_start
    for _, length, _ in runs:
        chunk_offsets.append(at)
        at += length
    wide = at >= 1 << 32
    return _full(b"co64" if wide else b"stco", 0, 0,
                 struct.pack(f">I{len(runs)}{'Q' if wide else 'I'}", len(runs), *chunk_offsets))


def _run_length(values: np.ndarray, dtype: str) -> bytes:
    """(count, value) pairs of the runs of equal values, with their number first (stts, ctts)."""
    starts = np.concatenate(([0], np.flatnonzero(np.diff(values)) + 1))
    counts = np.diff(np.append(starts, len(values)))
    pairs = np.empty((len(starts), 2), np.int64)
    pairs[:, 0], pairs[:, 1] = counts, values[starts]
    return struct.pack(">I", len(starts)) + pairs.astype(dtype).tobytes()


def _stsc(runs: Sequence[tuple[int, int, int]]) -> list[bytes]:
    entries: list[tuple[int, int]] = []
    for number, (_, _, samples) in enumerate(runs, start=1):
        if not entries or entries[-1][1] != samples:
            entries.append((number, samples))
    return [struct.pack(">I", len(entries)),
            *(struct.pack(">III", first, samples, 1) for first, samples in entries)]
