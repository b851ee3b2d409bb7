"""Read an MP4's video track summary (frames, duration) from its box index without ffprobe.

Verifying every chunk with an ffprobe process costs ~100 ms each; the sample tables in `moov`
already say how many frames a track holds and how long it lasts."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import numpy as np

from pipeline.errors import DamagedIndexError
from pipeline.types import SampleTable

Buffer = bytes | memoryview
Boxes = list[tuple[bytes, memoryview]]

# The most of `moov` ever read: a day of 60 fps video with its audio indexes in ~150 MB (some
# 20 bytes a frame), ten hours in tens of MB. More is not an index: a box that claims more (or
# runs "to the end" of a huge file) is read box by box, up to here.
MAX_INDEX_BYTES = 256 * 1024 * 1024
# The boxes directly in `moov`: a header, the tracks, metadata; a few dozen in real files.
MAX_INDEX_BOXES = 10_000
# mdhd's duration when the muxer did not know it (all ones, version 0 or 1).
_UNKNOWN = (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class TrackSummary:
    frames: int
    duration: Fraction
    starts_on_keyframe: bool = True


def video_track(path: str) -> TrackSummary | None:
    """The first video track's frame count and duration, or None if the file is no readable MP4."""
    try:
        with open(path, "rb") as fh:
            moov = _moov(fh, os.fstat(fh.fileno()).st_size)
            if moov is None:
                return None
            for trak in _of(moov, b"trak"):
                summary = _video_summary(trak)
                if summary is not None:
                    return summary
    except (OSError, struct.error, ValueError, DamagedIndexError):
        return None
    return None


def _header(fh: BinaryIO, room: int) -> tuple[bytes, int, int] | None:
    """The box header at `fh`'s position, in a space of `room` bytes: (type, size, header
    length), size 0 meaning "to the end"; None where no header fits."""
    if room < 8:
        return None
    head = fh.read(8)
    if len(head) < 8:
        return None
    size, kind = struct.unpack(">I4s", head)
    if size == 1:
        size = struct.unpack(">Q", fh.read(8))[0]
        return kind, size, 16
    return kind, size, 8


def _moov(fh: BinaryIO, file_end: int) -> Boxes | None:
    """The boxes inside the first top-level `moov` of a file of `file_end` bytes, each read on
    its own, up to MAX_INDEX_BYTES: a moov that runs "to the end" of the file (size 0) ends
    where its boxes do (a header of size 0: padding), however large the file."""
    end = _find_top(fh, b"moov", file_end)
    if end is None:
        return None
    boxes: Boxes = []
    held = 0
    while (found := _header(fh, end - fh.tell())) is not None:
        kind, size, header = found
        if size == 0:
            break  # padding to the end of the file, never read
        if size < header:
            raise ValueError("bad box size")
        held += size
        if held > MAX_INDEX_BYTES or len(boxes) >= MAX_INDEX_BOXES:
            raise DamagedIndexError(f"its moov box holds more than {MAX_INDEX_BYTES >> 20} MiB "
                                    f"or {MAX_INDEX_BOXES:,} boxes, more than any real index")
        boxes.append((kind, memoryview(fh.read(min(size - header, end - fh.tell())))))
    return boxes


def _find_top(fh: BinaryIO, kind: bytes, file_end: int) -> int | None:
    """Place `fh` at the body of the first top-level box of type `kind`; where that box ends."""
    at = 0
    fh.seek(0)
    while (found := _header(fh, file_end - at)) is not None:
        box, size, header = found
        size = size or file_end - at
        if size < header:
            return None
        if box == kind:
            return min(at + size, file_end)
        at += size
        fh.seek(at)
    return None


def _of(boxes: Boxes, kind: bytes) -> list[memoryview]:
    return [body for box, body in boxes if box == kind]


def _boxes(data: Buffer) -> list[tuple[bytes, memoryview]]:
    """The boxes inside `data`, as (type, body); bodies are views, never copies (a ten-hour
    moov is tens of MB, nested five deep)."""
    data = memoryview(data)
    out: list[tuple[bytes, memoryview]] = []
    pos = 0
    while pos + 8 <= len(data):
        size, box = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            raise ValueError("bad box size")
        out.append((box, data[pos + header:pos + size]))
        pos += size
    return out


def _children(data: Buffer, kind: bytes) -> list[memoryview]:
    return [body for box, body in _boxes(data) if box == kind]


def _descend(data: Buffer, *path: bytes) -> memoryview | None:
    view = memoryview(data)
    for kind in path:
        found = _children(view, kind)
        if not found:
            return None
        view = found[0]
    return view


def _video_summary(trak: Buffer) -> TrackSummary | None:
    hdlr = _descend(trak, b"mdia", b"hdlr")
    if hdlr is None or bytes(hdlr[8:12]) != b"vide":
        return None
    mdhd = _descend(trak, b"mdia", b"mdhd")
    stsz = _descend(trak, b"mdia", b"minf", b"stbl", b"stsz")
    if mdhd is None or stsz is None:
        return None
    if mdhd[0] == 1:
        timescale, duration = struct.unpack_from(">IQ", mdhd, 20)
    else:
        timescale, duration = struct.unpack_from(">II", mdhd, 12)
    if not timescale:
        return None
    frames = struct.unpack_from(">I", stsz, 8)[0]
    stss = _descend(trak, b"mdia", b"minf", b"stbl", b"stss")
    first_key = stss is None or (struct.unpack_from(">I", stss, 4)[0] > 0
                                 and struct.unpack_from(">I", stss, 8)[0] == 1)
    return TrackSummary(frames, Fraction(duration, timescale), first_key)


TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"}


def video_tables(path: str) -> dict[int, SampleTable]:
    """Every plainly readable video track's sample table, by track position; {} for a file that
    is not an MP4/MOV (it is cheap to call on anything: it reads box headers only). Raises
    DamagedIndexError for an index that contradicts its boxes or the file."""
    try:
        with open(path, "rb") as fh:
            return tables_in(fh)
    except OSError:
        return {}


def tables_in(fh: BinaryIO) -> dict[int, SampleTable]:
    """`video_tables` on an open, seekable file: box headers and `moov` are all it reads (a
    file object over ranged reads of a remote object works as well as a local file).

    Every track's counts are checked against their boxes and the file first: ffprobe, given
    such an index, allocates ~24 bytes a claimed sample (30 million: 290 MB), so this runs
    before it does."""
    try:
        file_size = fh.seek(0, io.SEEK_END)  # before any read: seeking to the end drops the buffer
        fh.seek(0)
        if fh.read(8)[4:8] not in TOP_LEVEL:
            return {}
        moov = _moov(fh, file_size)
        if moov is None:
            return {}
        traks = _of(moov, b"trak")
        for trak in traks:
            _check_counts(trak, file_size)
        if _of(moov, b"mvex"):
            return {}
        tables = {}
        for index, trak in enumerate(traks):
            try:
                table = _table(trak)
            except (struct.error, ValueError, IndexError, TypeError):
                table = None
            if table is not None:
                tables[index] = table
        return tables
    except (OSError, struct.error, ValueError, IndexError):
        return {}


# Tables of fixed-size entries after a count: (box, bytes before the entries, entry size).
_COUNTED = ((b"stts", 8, 8), (b"ctts", 8, 8), (b"stss", 8, 4), (b"stsc", 8, 12),
            (b"stco", 8, 4), (b"co64", 8, 8))


def _check_counts(trak: Buffer, file_size: int) -> None:
    """Each count the track's sample table claims fits the box holding its entries; samples of
    a fixed size fit in the file (each sample is in it)."""
    stbl = _descend(trak, b"mdia", b"minf", b"stbl")
    if stbl is None:
        return
    boxes = dict(_boxes(stbl))
    for kind, before, width in _COUNTED:
        box = boxes.get(kind)
        if box is not None and len(box) >= before:
            _fits(kind, box, before, width, _u32(box, 4))
    stsz = boxes.get(b"stsz")
    if stsz is not None and len(stsz) >= 12:
        fixed, count = struct.unpack_from(">II", stsz, 4)
        if fixed == 0:
            _fits(b"stsz", stsz, 12, 4, count)
        elif count * fixed > file_size:
            raise DamagedIndexError(f"its stsz lists {count:,} samples of {fixed:,} bytes, "
                                    f"{count * fixed:,} bytes in a file of {file_size:,}")
    stz2 = boxes.get(b"stz2")
    if stz2 is not None and len(stz2) >= 12:
        _fits(b"stz2", stz2, 12, stz2[7] / 8, _u32(stz2, 8))
    elst = _descend(trak, b"edts", b"elst")
    if elst is not None and len(elst) >= 8:
        _fits(b"elst", elst, 8, 20 if elst[0] == 1 else 12, _u32(elst, 4))


def _fits(kind: bytes, box: Buffer, before: int, width: float, count: int) -> None:
    if before + width * count > len(box):
        raise DamagedIndexError(f"its {kind.decode(errors='replace')} box claims {count:,} "
                                f"entries but holds {int((len(box) - before) // width):,}")


def _u32(data: Buffer, offset: int) -> int:
    return int(struct.unpack_from(">I", data, offset)[0])


def _column(data: Buffer, dtype: str, count: int, offset: int) -> np.ndarray:
    """`count` big-endian numbers from `data` at `offset`, as int64 (a short box raises)."""
    return np.frombuffer(data, dtype, count, offset).astype(np.int64)


def _table(trak: Buffer) -> SampleTable | None:
    hdlr = _descend(trak, b"mdia", b"hdlr")
    mdhd = _descend(trak, b"mdia", b"mdhd")
    stbl = _descend(trak, b"mdia", b"minf", b"stbl")
    if hdlr is None or bytes(hdlr[8:12]) != b"vide" or mdhd is None or stbl is None:
        return None
    timescale = _u32(mdhd, 20 if mdhd[0] == 1 else 12)
    if timescale == 0:
        raise DamagedIndexError("its video track's timescale is 0")
    boxes = dict(_boxes(stbl))
    stsd, stsz, stts = boxes.get(b"stsd"), boxes.get(b"stsz"), boxes.get(b"stts")
    stsc = boxes.get(b"stsc")
    stco = boxes.get(b"stco") or boxes.get(b"co64")
    if not (stsd and stsz and stts and stsc and stco) or _u32(stsd, 4) != 1:
        return None
    sizes = _sizes(stsz)
    n = len(sizes)
    durations = _expand_runs(stts, n, signed=False)
    ctts = boxes.get(b"ctts")
    shifts = _expand_runs(ctts, n, signed=ctts[0] == 1) if ctts else np.zeros(n, np.int64)
    dts = np.cumsum(durations)
    dts -= durations
    pts = shifts
    pts += dts
    _check_times(mdhd, timescale, int(dts[-1] + durations[-1]) if n else 0, pts)
    if not _plain_edit_list(trak, int(pts.min()) if n else 0):
        return None
    tkhd = _descend(trak, b"tkhd")
    if tkhd is None:
        return None
    language = int(struct.unpack_from(">H", mdhd, 32 if mdhd[0] == 1 else 20)[0])
    offsets = _sample_offsets(stsc, stco, boxes.get(b"co64") is not None, sizes)
    return SampleTable(timescale, dts, pts, durations, sizes, _keys(boxes.get(b"stss"), n),
                       offsets, bytes(stsd), bytes(tkhd), language)


def _check_times(mdhd: Buffer, timescale: int, end: int, pts: np.ndarray) -> None:
    """Frame times end within the track's stated duration (a second's grace), and no two frames
    share one time."""
    stated = (struct.unpack_from(">Q", mdhd, 24) if mdhd[0] == 1
              else struct.unpack_from(">I", mdhd, 16))[0]
    if stated and stated not in _UNKNOWN and end > stated + timescale:
        raise DamagedIndexError(f"its frame times run to {end / timescale:,.3f} s, past the "
                                f"track's stated duration of {stated / timescale:,.3f} s")
    ordered = np.sort(pts, kind="stable")  # nearly sorted already: a few ms for a million
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise DamagedIndexError("two or more of its frames share one time")


def _sizes(stsz: Buffer) -> np.ndarray:
    fixed, count = struct.unpack_from(">II", stsz, 4)
    return np.full(count, fixed, np.int64) if fixed else _column(stsz, ">u4", count, 12)


def _expand_runs(box: Buffer, n: int, *, signed: bool) -> np.ndarray:
    """stts / ctts: (count, value) runs, one value a sample."""
    pairs = _column(box, ">i4" if signed else ">u4", 2 * _u32(box, 4), 8).reshape(-1, 2)
    if int(pairs[:, 0].sum()) != n or (pairs[:, 0] < 0).any():
        raise ValueError("a time table does not cover every sample")
    return np.repeat(pairs[:, 1], pairs[:, 0])


def _keys(stss: Buffer | None, n: int) -> np.ndarray:
    if stss is None:
        return np.ones(n, bool)  # no sync table: every sample is a keyframe
    keys = np.zeros(n, bool)
    numbers = _column(stss, ">u4", _u32(stss, 4), 8)
    if len(numbers) and (numbers.min() < 1 or numbers.max() > n):
        raise DamagedIndexError(f"its stss names a keyframe outside samples 1-{n:,}")
    keys[numbers - 1] = True
    return keys


def _plain_edit_list(trak: Buffer, first_pts: int) -> bool:
    """No edit list, or one edit that starts at the first displayed frame (the B-frame delay),
    optionally after an empty edit (a start delay, which shifts the whole track alike)."""
    elst = _descend(trak, b"edts", b"elst")
    if elst is None:
        return True
    wide = elst[0] == 1
    entries = struct.unpack_from(">I", elst, 4)[0]
    size = 20 if wide else 12
    times = [struct.unpack_from(">q" if wide else ">i", elst, 8 + i * size + (8 if wide else 4))[0]
             for i in range(entries)]
    if times and times[0] == -1:
        times = times[1:]
    return len(times) == 1 and 0 <= times[0] <= first_pts


def _sample_offsets(stsc: Buffer, stco: Buffer, wide: bool, sizes: np.ndarray) -> np.ndarray:
    """Each sample's file offset: chunks (stco) hold runs of consecutive samples (stsc)."""
    count = _u32(stco, 4)
    chunk_offsets = _column(stco, ">u8" if wide else ">u4", count, 8)
    runs = _column(stsc, ">u4", 3 * _u32(stsc, 4), 8).reshape(-1, 3)
    chunks_in_run = np.append(runs[1:, 0], count + 1) - runs[:, 0]
    per_chunk = np.repeat(runs[:, 1], chunks_in_run)  # raises on a negative count
    if len(per_chunk) != count or int(per_chunk.sum()) != len(sizes):
        raise ValueError("stsc/stco do not cover every sample")
    before = np.cumsum(sizes)
    before -= sizes  # bytes of all earlier samples
    chunk_first = np.cumsum(per_chunk)
    chunk_first -= per_chunk
    # A sample lies at its chunk's offset plus the bytes of the chunk's samples before it.
    offsets = np.repeat(chunk_offsets - before[np.minimum(chunk_first, len(sizes) - 1)],
                        per_chunk)
    offsets += before
    return offsets
