"""How long a container says it is: MP4/MOV box sizes, the Matroska/WebM Segment size, AVI's
RIFF sizes, MPEG-TS's whole packets. A file shorter than that is truncated (cut short, or still
being copied into the folder), whatever ffprobe makes of the part that is there. And whether a
file is text rather than a container at all. Reads headers only (a few bytes)."""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from pipeline.media import mp4read

# The boxes a file starts with that mp4read knows, and those of fragmented and other MP4s.
_MP4_TOP = mp4read.TOP_LEVEL | {b"meta", b"styp", b"sidx", b"moof", b"mfra", b"pdin", b"prft",
                                b"emsg"}
_EBML = b"\x1a\x45\xdf\xa3"
_SEGMENT = 0x18538067


def stated_size(path: str) -> int | None:
    """The byte length the container's own structure claims, or None when it claims none (or
    the format is not one of these)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            fh.seek(0)
            if head[4:8] in _MP4_TOP:
                return _mp4_end(fh)
            if head[:4] == _EBML:
                return _matroska_end(fh)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _riff_end(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, struct.error, ValueError):
        return None
    return None


def _mp4_end(fh: BinaryIO) -> int | None:
    """Where the last top-level box ends (a box of size 0 runs to the end of the file)."""
    boxes = _mp4_boxes(fh)
    return boxes[-1][1] if boxes else None


def _mp4_boxes(fh: BinaryIO) -> list[tuple[bytes, int]] | None:
    """The top-level boxes, each (type, where it ends); None where the structure cannot be
    followed (a box of size 0, or bytes that are no box)."""
    at = 0
    size = os.fstat(fh.fileno()).st_size
    boxes: list[tuple[bytes, int]] = []
    while at + 8 <= size:
        fh.seek(at)
        length, kind = struct.unpack(">I4s", fh.read(8))
        if length == 1:
            length = struct.unpack(">Q", fh.read(8))[0]
        elif length == 0:
            return None
        if length < 8 or kind not in _MP4_TOP and not kind.isalnum():
            return None  # not a box structure we can follow: claim nothing
        at += length
        boxes.append((kind, at))
    return boxes


def complete(path: str) -> bool:
    """The container itself says the file is finished, and it is all there: an MP4/MOV with its
    index (moov) and no fragments still to come (moof), a Matroska file whose Segment has a
    known size, an AVI; each exactly as long as its structure says. A camera's MPEG-TS, a live
    Matroska recording (unknown size) or a fragmented MP4 can say no such thing."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            fh.seek(0)
            size = os.fstat(fh.fileno()).st_size
            if head[4:8] in _MP4_TOP:
                boxes = _mp4_boxes(fh) or []
                kinds = {kind for kind, _ in boxes}
                return bool(boxes) and boxes[-1][1] == size and b"moov" in kinds \
                    and b"moof" not in kinds
    except (OSError, struct.error, ValueError):
        return False
    return stated_size(path) == size


def _vint(fh: BinaryIO, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer: (value, bytes read); all value bits set means unknown."""
    first = fh.read(1)[0]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError("bad EBML integer")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in fh.read(length - 1):
        value = (value << 8) | byte
    return value, length


def _matroska_end(fh: BinaryIO) -> int | None:
    fh.seek(4)
    header_size, read = _vint(fh, keep_marker=False)
    fh.seek(4 + read + header_size)
    element, id_len = _vint(fh, keep_marker=True)
    if element != _SEGMENT:
        return None
    size, size_len = _vint(fh, keep_marker=False)
    if size == (1 << (7 * size_len)) - 1:
        return None  # unknown size: a live stream, written without seeking back
    return 4 + read + header_size + id_len + size_len + size


def _riff_end(fh: BinaryIO, file_size: int) -> int:
    """AVI: a RIFF 'AVI ' chunk, then (OpenDML, over 1 GB) further RIFF 'AVIX' chunks."""
    at = 0
    while at + 8 <= file_size:
        fh.seek(at)
        tag, length = struct.unpack("<4sI", fh.read(8))
        if tag != b"RIFF":
            break
        at += 8 + length + (length & 1)
    return at


# Bytes that never occur in text (controls other than tab, newlines, form feed and escape).
_BINARY = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27}) + b"\x7f"
_Y4M = b"YUV4MPEG2 "  # raw video behind one text line: the one video format that starts as text
_SNIFF = 4096


def is_text(path: str) -> bool:
    """Whether the file starts as text (its first 4 KB hold no control byte): an HLS or M3U
    playlist, an ffconcat script, SDP, a DASH manifest, notes. Every real container starts
    binary within that (box sizes, magic numbers, packet headers); YUV4MPEG2 is the exception
    and is not text here. ffmpeg would read the text ones as lists of other files to open
    (a FIFO, a URL), so they are refused before ffprobe sees them."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF)
    except OSError:
        return False
    return bool(head) and not head.startswith(_Y4M) and head.translate(None, _BINARY) == head


_TS_SYNC = 0x47


def partial_packet(path: str, size: int) -> tuple[int, int] | None:
    """An MPEG-TS (188-byte packets) or M2TS (192: a 4-byte timestamp first) that ends inside a
    packet: (packet size, bytes of the last one there); None for anything else or a whole
    stream."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(3 * 192 + 4)
    except OSError:
        return None
    for packet, lead in ((188, 0), (192, 4)):
        marks = head[lead::packet][:3]
        if len(marks) == 3 and set(marks) == {_TS_SYNC}:
            return (packet, size % packet) if size % packet else None
    return None
