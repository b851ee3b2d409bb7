"""Probe: what a file holds (ffprobe's streams and format, and every video packet), parsed once
into typed values. Before ffprobe opens a file, it is checked to be one: a regular file, not
empty, not text (a playlist or concat script that names other files), whole, and, for an MP4,
an index whose counts fit its boxes and the file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

from pipeline.errors import DamagedIndexError, FFmpegError, InputError, ProcessKilled
from pipeline.media import containers, mp4read, proc
from pipeline.types import (
    Packet,
    Packets,
    PacketScan,
    SampleTable,
    StreamInfo,
    VideoInfo,
    to_ms,
)

# Containers that ffprobe reads as a single still image, not a video.
_IMAGE_FORMATS = ("image2", "_pipe", "gif")
# What ffprobe calls the MP4/MOV family, and the codecs of the sample entries it holds.
MP4_CONTAINER = "mov,mp4,m4a,3gp,3g2,mj2"
_SAMPLE_ENTRY_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc",
                        b"mp4v": "mpeg4", b"av01": "av1", b"vp09": "vp9"}


@dataclass(frozen=True)
class Scanned:
    """One stream's packets in decode order, and the furthest byte of the file they reach."""

    packets: Packets
    data_end: int


def probe(path: str, *, scan: bool = True, keep_audio: bool = False) -> VideoInfo:
    """Probe `path`; with `scan`, also read every video packet (and audio, to keep it)."""
    _check_file(path)
    # An MP4's index is read (and checked) before ffprobe runs: ffprobe allocates for every
    # sample an index claims (~24 bytes each), 290 MB for a 2 KB file claiming 30 million.
    with _damage_named(path):
        tables = mp4read.video_tables(path)
    info = _parse_info(path, _ffprobe(path))
    if not scan:
        return info
    table = _mp4_table(info, tables) if not keep_audio else None
    video = _table_packets(table) if table is not None else scan_packets(path, info.video)
    audio = (scan_packets(path, info.audio) if keep_audio and info.audio
             else Scanned(Packets.empty(), 0))
    _check_complete(path, info.size_bytes, video, audio)
    _check_all_frames_read(path, info, len(video.packets))
    audio_tb = info.audio.time_base if info.audio else Fraction(1, 1000)
    packets = PacketScan(video.packets, audio.packets, info.video.time_base, audio_tb)
    duration_ms = to_ms(packets.end - packets.origin)
    return VideoInfo(info.path, info.size_bytes, duration_ms or info.duration_ms, info.container,
                     info.bit_rate, info.streams, packets, table)


def probe_mp4(fh: BinaryIO, size: int, name: str) -> VideoInfo | None:
    """An MP4/MOV's VideoInfo from its boxes alone, read through `fh` (for an object in storage,
    ranged reads: box headers and `moov`, none of the media data); None for anything else,
    which then needs the whole file. No ffprobe: over HTTP it asks for open-ended ranges and
    drops them once it has enough, so far more crosses the wire than it reads."""
    with _damage_named(name):
        tables = mp4read.tables_in(fh)
    if not tables:
        return None
    index, table = min(tables.items())
    if table.data_end > size:
        raise InputError(name, f"truncated: its index refers to {table.data_end} bytes but the "
                               f"object has {size}")
    if not len(table.sizes):
        raise InputError(name, "has a video stream but no video frames")
    scan = PacketScan(table.packets, time_base=Fraction(1, table.timescale))
    duration = scan.end - scan.origin
    stream = StreamInfo(
        index=index, kind="video", codec=_SAMPLE_ENTRY_CODECS.get(table.stsd[12:16], "unknown"),
        time_base=Fraction(1, table.timescale), width=_u16(table.stsd, 40),
        height=_u16(table.stsd, 42), frame_rate=len(table.sizes) / duration if duration else None,
        duration_ms=to_ms(duration), frame_count=len(table.sizes))
    return VideoInfo(name, size, to_ms(duration), MP4_CONTAINER, None, (stream,), scan, table)


def _u16(data: bytes, offset: int) -> int | None:
    return int.from_bytes(data[offset:offset + 2], "big") if len(data) >= offset + 2 else None


@contextmanager
def _damage_named(path: str) -> Iterator[None]:
    try:
        yield
    except DamagedIndexError as exc:
        raise InputError(path, f"damaged index: {exc}") from exc


def ffprobe_argv(path: str) -> list[str]:
    """ffprobe's streams and format of `path` as JSON (the arguments ffmpeg-python's probe
    gives), reading a local file through the file protocol only."""
    return [proc.FFPROBE, "-show_format", "-show_streams", "-of", "json",
            *proc.input_options(path), proc.media_input(path)]


def _ffprobe(path: str) -> dict[str, Any]:
    try:
        out = proc.run(ffprobe_argv(path), timeout=proc.deadlines().probe_timeout)
    except ProcessKilled as exc:
        raise InputError(path, f"ffprobe {exc.summary}") from exc
    except FFmpegError as exc:
        raise InputError(path, _why_unreadable(path, exc.stderr)) from exc
    try:
        raw: dict[str, Any] = json.loads(out)
    except ValueError as exc:
        raise InputError(path, "not a readable video (ffprobe printed no JSON)") from exc
    return raw


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str | None:
    """What a file of `mode` is, if it is not a regular file nor a directory ("a FIFO")."""
    return next((name for test, name in _KINDS if test(mode)), None)


def _check_file(path: str) -> None:
    """What can be told without ffprobe: the file is there, a regular file (a FIFO would block
    whoever opens it), not empty, media rather than text, and whole."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read it: {(exc.strerror or str(exc)).lower()}") from None
    if stat.S_ISDIR(found.st_mode):
        raise InputError(path, "is a directory, not a video file")
    if not stat.S_ISREG(found.st_mode):
        odd = not_regular(found.st_mode) or "of an odd kind"
        raise InputError(path, f"not a regular file ({odd})")
    size = found.st_size
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if containers.is_text(path):
        raise InputError(path, "not a readable video: it is text, not a media container (a "
                               "playlist, concat script or other list that names other files "
                               "is not read)")
    _check_whole(path, size)


def _check_whole(path: str, size: int) -> None:
    later = "cut short, or still being copied; a later run will take it once it is whole"
    partial = containers.partial_packet(path, size)
    if partial is not None:
        packet, left = partial
        raise InputError(path, f"truncated: ends in a partial {packet}-byte packet ({left} of "
                               f"its {packet} bytes; {later})")
    stated = containers.stated_size(path)
    if stated is not None and stated > size:
        raise InputError(path, f"truncated: its container says {stated:,} bytes but the file has "
                               f"{size:,} ({later})")


def _why_unreadable(path: str, stderr: str) -> str:
    text = stderr.strip().splitlines()
    last = text[-1] if text else "ffprobe could not read it"
    last = last.removeprefix(f"{proc.media_input(path)}: ")
    if "moov atom not found" in last:
        return f"not a readable video: truncated or incomplete MP4 ({last})"
    return f"not a readable video ({last})"


def _frac(value: Any) -> Fraction | None:
    if value in (None, "", "N/A", "0/0"):
        return None
    try:
        result = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return result


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(float(side["rotation"])) % 360
    rotate = stream.get("tags", {}).get("rotate")
    return int(rotate) % 360 if rotate is not None else 0


def _parse_stream(raw: dict[str, Any]) -> StreamInfo:
    duration = _frac(raw.get("duration"))
    return StreamInfo(
        index=int(raw["index"]),
        kind=str(raw.get("codec_type", "data")),
        codec=str(raw.get("codec_name", "unknown")),
        time_base=_frac(raw.get("time_base")) or Fraction(1, 90000),
        width=_int(raw.get("width")),
        height=_int(raw.get("height")),
        frame_rate=_frac(raw.get("avg_frame_rate")) or _frac(raw.get("r_frame_rate")),
        rotation=_rotation(raw),
        duration_ms=to_ms(duration) if duration is not None else None,
        bit_rate=_int(raw.get("bit_rate")),
        is_cover_art=bool(raw.get("disposition", {}).get("attached_pic", 0)),
        frame_count=_int(raw.get("nb_frames")),
    )


def _parse_info(path: str, raw: dict[str, Any]) -> VideoInfo:
    fmt = raw.get("format", {})
    streams = tuple(_parse_stream(s) for s in raw.get("streams", []))
    container = str(fmt.get("format_name", "unknown"))
    videos = [s for s in streams if s.kind == "video" and not s.is_cover_art]
    if not videos:
        kinds = sorted({s.kind for s in streams}) or ["no streams"]
        what = "audio only" if kinds == ["audio"] else ", ".join(kinds)
        raise InputError(path, f"has no video stream ({what})")
    if any(tag in container for tag in _IMAGE_FORMATS):
        raise InputError(path, f"is a still image ({container}), not a video")
    duration = _frac(fmt.get("duration"))
    return VideoInfo(
        path=path,
        size_bytes=os.path.getsize(path),
        duration_ms=to_ms(duration) if duration is not None else 0,
        container=container,
        bit_rate=_int(fmt.get("bit_rate")),
        streams=streams,
    )


def _is_mp4(info: VideoInfo) -> bool:
    """MP4 or MOV, as ffprobe names the family."""
    return "mp4" in info.container or "mov" in info.container


def _mp4_table(info: VideoInfo, tables: dict[int, SampleTable]) -> SampleTable | None:
    """MP4/MOV: the video stream's sample table in `moov` (its packets without a pass over a
    700 MB file; `tables` by track position); None when the file is anything else or anything
    looks unusual (the caller asks ffprobe then)."""
    if not _is_mp4(info):
        return None
    found = tables.get(info.video.index)
    stream = info.video
    if (found is None or stream.time_base != Fraction(1, found.timescale)
            or (stream.frame_count is not None and stream.frame_count != len(found.sizes))):
        return None
    return found


def _table_packets(table: SampleTable) -> Scanned:
    return Scanned(table.packets, table.data_end)


def mp4_packets(path: str, info: VideoInfo) -> Scanned | None:
    """The MP4 fast path's packets, or None where it does not apply."""
    table = _mp4_table(info, mp4read.video_tables(path))
    return _table_packets(table) if table is not None else None


def scan_packets(path: str, stream: StreamInfo) -> Scanned:
    """Every packet of one stream in decode order (ffprobe's packet listing)."""
    # csv prints the fields in ffprobe's own order: pts, dts, duration, size, pos, flags.
    argv = [proc.FFPROBE, "-v", "error", "-select_streams", str(stream.index),
            "-show_entries", "packet=pts,dts,duration,size,pos,flags", "-of", "csv=p=0",
            *proc.input_options(path), proc.media_input(path)]
    try:
        out = proc.run(argv, timeout=proc.deadlines().deadline(
            media_seconds=(stream.duration_ms or 0) / 1000, size_bytes=os.path.getsize(path)))
    except FFmpegError as exc:
        raise InputError(path, f"cannot read packets ({exc.summary})") from exc
    return _parse_packets(out, stream)


def _parse_packets(text: str, stream: StreamInfo) -> Scanned:
    rate = stream.frame_rate
    default_dur = int(1 / (rate * stream.time_base)) if rate else 0
    packets: list[Packet] = []
    data_end = 0
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 6 or not fields[3].isdigit():
            continue  # a packet's side-data line (MPEG-TS prints one after each packet)
        pts_s, dts_s, dur_s, size_s, pos_s, flags = fields[:6]
        ts = pts_s if pts_s.lstrip("-").isdigit() else dts_s
        duration = int(dur_s) if dur_s.isdigit() and dur_s != "0" else default_dur
        # With neither pts nor dts, the frame follows the previous one.
        follows = packets[-1].end if packets else 0
        pts = int(ts) if ts.lstrip("-").isdigit() else follows
        size = int(size_s)
        pos = int(pos_s) if pos_s.isdigit() else -1
        packets.append(Packet(pts, duration, size, "K" in flags))
        data_end = max(data_end, pos + size if pos >= 0 else 0)
    return Scanned(Packets.of(packets), data_end)


def _check_all_frames_read(path: str, info: VideoInfo, scanned: int) -> None:
    """ffprobe stops quietly where the data ends; an MP4 index that promises more frames than
    could be read means the file was cut short (moov first, media data truncated). Only MP4/MOV
    count every frame exactly: an AVI's index also lists the empty "drop" entries of variable
    frame rate, which hold no frame."""
    declared = info.video.frame_count
    if not _is_mp4(info):
        return
    if declared and scanned < declared:
        raise InputError(path, f"truncated: only {scanned} of the {declared} video frames its "
                               "index lists could be read")


def _check_complete(path: str, size: int, video: Scanned, audio: Scanned) -> None:
    if not len(video.packets):
        raise InputError(path, "has a video stream but no video frames")
    data_end = max(video.data_end, audio.data_end)
    if data_end > size:
        raise InputError(
            path, f"truncated: its index refers to {data_end} bytes but the file has {size}"
        )
