"""Write MP4 chunks straight from a source MP4's sample table: a new `moov` for the chunk's
video samples, then their bytes copied in the kernel (copy_file_range), never through a muxer.

ffmpeg's segment muxer reads and re-writes every packet of the file (~5x `cp` on the benchmark
machine); this costs little more than copying the chunk's bytes. Used only where the sample
table was read exactly (mp4.sample_table); everything else goes through ffmpeg."""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections.abc import Iterable, Sequence

from pipeline.types import SampleTable

_MOVIE_TIMESCALE = 1000
_IDENTITY = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def write_chunk(src_fd: int, table: SampleTable, first: int, end: int, path: str) -> None:
    """Write samples [first, end) of `table` (decode order, starting on a keyframe) to `path`."""
    runs = _runs(table, first, end)
    header = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    draft = _moov(table, first, end, runs, 0)
    # stco is the last box of moov and its size does not depend on the offsets it holds.
    stco = _stco(runs, len(header) + len(draft) + 8)
    moov = draft[:len(draft) - len(stco)] + stco
    payload = sum(length for _, length, _ in runs)
    with open(path, "wb") as out:
        out.write(header + moov + struct.pack(">I4s", 8 + payload, b"mdat"))
        out.flush()
        _copy_runs(src_fd, out.fileno(), runs)


def _runs(table: SampleTable, first: int, end: int) -> list[tuple[int, int, int]]:
    """Consecutive samples that are also contiguous in the file: (offset, bytes, samples)."""
    runs: list[list[int]] = []
    for i in range(first, end):
        offset, size = table.offsets[i], table.sizes[i]
        if runs and runs[-1][0] + runs[-1][1] == offset:
            runs[-1][1] += size
            runs[-1][2] += 1
        else:
            runs.append([offset, size, 1])
    return [(o, n, k) for o, n, k in runs]


_SPAN = 64 << 20  # read at most this much of the source at once
_IOV = 1000  # writev takes at most IOV_MAX (1024) pieces


def _copy_runs(src: int, dst: int, runs: Sequence[tuple[int, int, int]]) -> None:
    """Copy runs that are close together in the source (video samples interleaved with audio)
    by reading their whole span once and writing just the runs with writev; a run far from the
    others is copied in the kernel."""
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
    dts0 = table.dts[first]
    pts, durations = table.pts[first:end], table.durations[first:end]
    media_time = min(pts) - dts0
    shown = max(map(sum, zip(pts, durations, strict=True))) - dts0 - media_time
    media_duration = sum(durations)
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
             _full(b"stts", 0, 0, *_run_length(table.durations[first:end], ">II"))]
    offsets = [p - d for p, d in zip(table.pts[first:end], table.dts[first:end], strict=True)]
    if any(offsets):
        signed = min(offsets) < 0
        boxes.append(_full(b"ctts", 1 if signed else 0, 0,
                           *_run_length(offsets, ">Ii" if signed else ">II")))
    keys = [i + 1 for i, key in enumerate(table.keys[first:end]) if key]
    if len(keys) < count:
        boxes.append(_full(b"stss", 0, 0, struct.pack(f">I{len(keys)}I", len(keys), *keys)))
    boxes.append(_full(b"stsc", 0, 0, *_stsc(runs)))
    boxes.append(_full(b"stsz", 0, 0, struct.pack(f">II{count}I", 0, count,
                                                  *table.sizes[first:end])))
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


def _run_length(values: Iterable[int], fmt: str) -> list[bytes]:
    pairs = [(len(list(run)), value) for value, run in itertools.groupby(values)]
    flat = [x for pair in pairs for x in pair]
    return [struct.pack(f">I{fmt[1:] * len(pairs)}", len(pairs), *flat)]


def _stsc(runs: Sequence[tuple[int, int, int]]) -> list[bytes]:
    entries: list[tuple[int, int]] = []
    for number, (_, _, samples) in enumerate(runs, start=1):
        if not entries or entries[-1][1] != samples:
            entries.append((number, samples))
    return [struct.pack(">I", len(entries)),
            *(struct.pack(">III", first, samples, 1) for first, samples in entries)]
