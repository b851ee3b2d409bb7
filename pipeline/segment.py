"""Segment: cut a video into chunks that fit the limits, losing and duplicating no frame.

The work is a queue of stretches: a file (the source, a chunk that came out too big, or a
re-encode) placed on the source's clock. Each stretch is planned and cut in one pass by stream
copy at planned keyframes (MP4 sources straight from their sample table; others through the
segment muxer, by decode-order frame number: its time-based cuts are shifted by the codec delay,
docs/chunking.md). Each piece is verified, then kept, queued again with a tighter budget, or,
when one keyframe interval alone cannot fit, re-encoded and queued as a new stretch.

In memory (`run`), an MP4 source's stream-copied chunks are not written at all: each is the
source's samples [first, end), whose exact size the sample table gives, built when it is sent
(send.media). Re-encoded stretches and other containers are files either way."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline.errors import FFmpegError, InputError, SegmentError, UndecodableChunk, io_failure
from pipeline.media import cutting, ffargs, mp4read, mp4write, proc
from pipeline.plan import Overhead, plan_chunks, whole_plan
from pipeline.probe import probe
from pipeline.types import Chunk, Limits, PacketScan, Plan, PlannedChunk, VideoInfo

log = logging.getLogger(__name__)

_MAX_DEPTH = 4


@dataclass(frozen=True)
class SegmentOptions:
    keep_audio: bool = False
    overhead: Overhead = Overhead()


@dataclass(frozen=True)
class Stretch:
    """A file still to be made into chunks, and where its first frame sits on the source clock.
    `base` is the index of its first sample in the source's sample table, for a stretch that is
    a range of the source's samples (in-memory chunks)."""

    info: VideoInfo
    offset: Fraction
    limits: Limits  # the budget to plan it with: tighter after a chunk came out over
    depth: int = 0  # re-cuts and re-encodes that led here
    reencoded: bool = False
    base: int = 0
    plan: Plan | None = None  # already made (the source's, by `split`)


def fits_whole(info: VideoInfo, limits: Limits) -> bool:
    """A video under both limits is sent as it is."""
    return info.size_bytes <= limits.max_bytes and info.duration_ms <= limits.max_duration_ms


def copyable(info: VideoInfo) -> bool:
    """Whether the video stream can be copied into an MP4 chunk untouched."""
    codec = info.video.codec
    return codec in ffargs.MP4_VIDEO_CODECS or (codec == "mpeg4" and "mp4" in info.container)


def make_plan(info: VideoInfo, limits: Limits, options: SegmentOptions = SegmentOptions()) -> Plan:
    """The plan for a probed video: whole if it fits, else packed keyframe intervals."""
    assert info.scan is not None, "make_plan needs a packet scan"
    if fits_whole(info, limits):
        return whole_plan(info.scan, limits, info.size_bytes)
    plan = plan_chunks(info.scan, limits, options.overhead)
    if not copyable(info):
        return Plan(plan.limits, False, plan.chunks, plan.origin, plan.total_bytes,
                    f"{info.video.codec} cannot be stream-copied into MP4; it is transcoded first")
    return plan


def split(info: VideoInfo, limits: Limits, out_dir: str,
          options: SegmentOptions = SegmentOptions(), *, in_memory: bool = False) -> list[Chunk]:
    """The chunks of `info`, verified, in order: written into `out_dir`, or (`in_memory`, for an
    MP4 source cut by stream copy) described by the source's samples, with only re-encoded
    stretches written there."""
    plan = make_plan(info, limits, options)
    if plan.whole:
        only = plan.chunks[0]
        return [Chunk(0, info.path, Fraction(0), only.end - only.start, info.size_bytes,
                      only.frames)]
    with _failures_named(info.path), _work_dir(out_dir, ".work") as work:
        cutter = _Cutter(limits, options, work, in_memory=in_memory)
        pieces = cutter.cut(Stretch(info, Fraction(0), limits, plan=plan))
        _check_frames(info, pieces)
        for old in Path(out_dir).glob("chunk-*.mp4"):
            old.unlink()
        return _place(pieces, Path(out_dir), "chunk-{:05d}.mp4")


def resplit(chunk: Chunk, limits: Limits, out_dir: str,
            options: SegmentOptions = SegmentOptions(), *,
            source: VideoInfo | None = None) -> list[Chunk]:
    """Cut one chunk again under `limits` (the API said it was too large or too slow); the
    pieces' times stay on the source timeline. An in-memory chunk is cut from `source`'s
    samples, into in-memory pieces."""
    if chunk.packets is not None:
        assert source is not None, "an in-memory chunk is re-cut from its source"
        info = _samples(source, *chunk.packets)
    else:
        info = probe(chunk.path, keep_audio=options.keep_audio)
    assert info.scan is not None
    plan = plan_chunks(info.scan, limits, options.overhead)
    if len(plan.chunks) < 2 and not plan.chunks[0].reencode:
        raise SegmentError(f"{chunk.path}: a single keyframe interval; cannot cut it smaller")
    base = chunk.packets[0] if chunk.packets else 0
    try:
        with _work_dir(out_dir, f".work-{chunk.index}") as work:
            first = Stretch(info, chunk.start, limits, depth=1, reencoded=chunk.reencoded,
                            base=base, plan=plan)
            pieces = _Cutter(limits, options, work, in_memory=chunk.packets is not None).cut(first)
            return _place(pieces, Path(out_dir), f"chunk-{chunk.index:05d}-{{:03d}}.mp4")
    except FFmpegError as exc:
        raise SegmentError(f"{chunk.path}: could not re-cut it ({exc.summary})") from exc


def _samples(info: VideoInfo, first: int, end: int) -> VideoInfo:
    """The source's video samples [first, end) as a VideoInfo of their own (columns sliced, not
    copied): the same file, its table's rows first..end."""
    assert info.table is not None and info.scan is not None
    table = info.table
    rows = slice(first, end)
    sub = dataclasses.replace(
        table, dts=table.dts[rows], pts=table.pts[rows], durations=table.durations[rows],
        sizes=table.sizes[rows], keys=table.keys[rows], offsets=table.offsets[rows])
    scan = PacketScan(sub.packets, time_base=info.scan.time_base)
    return dataclasses.replace(info, scan=scan, table=sub)


@contextlib.contextmanager
def _failures_named(path: str) -> Iterator[None]:
    """A failed cut is the input's failure, except a disk that is full or read-only."""
    try:
        yield
    except FFmpegError as exc:
        raise io_failure(exc) or InputError(path, f"ffmpeg could not cut it ({exc.summary})") \
            from exc
    except UndecodableChunk as exc:
        raise InputError(path, f"a chunk does not decode ({exc})") from exc


@contextlib.contextmanager
def _work_dir(out_dir: str, name: str) -> Iterator[Path]:
    """A fresh scratch folder inside `out_dir` for intermediate pieces, removed afterwards."""
    os.makedirs(out_dir, exist_ok=True)
    work = Path(out_dir) / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _place(pieces: list[Chunk], out_dir: Path, name: str) -> list[Chunk]:
    """The pieces in time order, numbered; files moved to `out_dir` under `name` (formatted
    with the number); in-memory pieces stay descriptions of the source."""
    final: list[Chunk] = []
    for i, piece in enumerate(sorted(pieces, key=lambda c: c.start)):
        path = piece.path
        if piece.packets is None:
            path = str(out_dir / name.format(i))
            os.replace(piece.path, path)
        final.append(dataclasses.replace(piece, index=i, path=path))
    return final


class _Cutter:
    """Cuts stretches into verified chunks inside one scratch folder, against one set of limits."""

    def __init__(self, limits: Limits, options: SegmentOptions, work: Path, *,
                 in_memory: bool = False) -> None:
        self.limits = limits
        self.options = options
        self.work = work
        self.in_memory = in_memory and not options.keep_audio
        self._names = itertools.count()

    def cut(self, first: Stretch) -> list[Chunk]:
        pending: deque[Stretch] = deque([first])
        done: list[Chunk] = []
        while pending:
            stretch = pending.popleft()
            if stretch.depth > _MAX_DEPTH:
                raise SegmentError(f"{first.info.path}: could not make chunks under "
                                   f"{self.limits.max_bytes} bytes")
            if not copyable(stretch.info):
                log.warning("%s: %s video is transcoded to H.264 before cutting",
                            stretch.info.path, stretch.info.video.codec)
                pending.append(self._reencode(stretch.info.path, f"0:{stretch.info.video.index}",
                                              stretch.offset, stretch.depth,
                                              seconds=stretch.info.duration_ms / 1000))
                continue
            for piece in self._pass(stretch):
                if isinstance(piece, Chunk):
                    done.append(piece)
                else:
                    pending.append(piece)
        return done

    def _pass(self, stretch: Stretch) -> Iterator[Chunk | Stretch]:
        """Plan and cut one stretch; yield each piece as a finished chunk or a stretch to redo."""
        info = stretch.info
        assert info.scan is not None
        plan = stretch.plan or plan_chunks(info.scan, stretch.limits, self.options.overhead)
        if self.in_memory and info.table is not None and not stretch.reencoded:
            yield from self._memory_pass(stretch, plan)  # the source's own samples
            return
        dest = self.work / f"pass-{next(self._names)}"
        if info.table is not None and not self.options.keep_audio:
            files = cutting.write_pass(info, plan, dest)
        else:
            files = cutting.segment_pass(info, plan, self.options.keep_audio, dest)
        for planned, path in zip(plan.chunks, files, strict=True):
            start = stretch.offset + planned.start - plan.origin
            yield self._settle(planned, path, start, stretch)

    def _settle(self, planned: PlannedChunk, path: str, start: Fraction,
                stretch: Stretch) -> Chunk | Stretch:
        """Keep a piece that fits; re-encode an oversized interval; re-cut one that came out
        over the limit (the plan's byte estimate is padded, but container overhead varies)."""
        size = os.path.getsize(path)
        track = mp4read.video_track(path)
        if track is None or not track.starts_on_keyframe:
            raise SegmentError(f"{path}: the chunk written is not a readable MP4 starting on a "
                               "keyframe")
        if planned.reencode:
            return self._reencode_interval(path, planned, start, stretch)
        if size <= self.limits.max_bytes and track.duration <= self.limits.max_duration:
            return Chunk(planned.index, path, start, start + planned.duration, size, track.frames,
                         stretch.reencoded)
        return Stretch(probe(path, keep_audio=self.options.keep_audio), start,
                       self._tighter(size, start, track.duration), stretch.depth + 1,
                       stretch.reencoded)

    def _memory_pass(self, stretch: Stretch, plan: Plan) -> Iterator[Chunk | Stretch]:
        """The same verdicts as a written pass, from the sample table alone: each chunk's exact
        size and duration, no bytes copied. The first chunk is built and decoded, as a written
        pass decodes its first file."""
        info = stretch.info
        table = info.table
        assert table is not None
        for planned in plan.chunks:
            first, end = planned.first_packet, planned.end_packet
            start = stretch.offset + planned.start - plan.origin
            if planned.reencode:
                path = str(self.work / f"interval-{next(self._names)}.mp4")
                with open(info.path, "rb") as src:
                    mp4write.write_chunk(src.fileno(), table, first, end, path)
                yield self._reencode_interval(path, planned, start, stretch)
                continue
            if planned.index == 0:
                with open(info.path, "rb") as src:
                    cutting.check_decodes_bytes(mp4write.chunk_bytes(src.fileno(), table, first,
                                                                     end))
            size = mp4write.layout(table, first, end).size
            duration = Fraction(int(table.durations[first:end].sum()), table.timescale)
            if size <= self.limits.max_bytes and duration <= self.limits.max_duration:
                yield Chunk(planned.index, info.path, start, start + planned.duration, size,
                            end - first, stretch.reencoded,
                            packets=(stretch.base + first, stretch.base + end))
                continue
            yield Stretch(_samples(info, first, end), start, self._tighter(size, start, duration),
                          stretch.depth + 1, stretch.reencoded, base=stretch.base + first)

    def _tighter(self, size: int, start: Fraction, duration: Fraction) -> Limits:
        log.info("chunk at %.1f s came out at %d bytes / %.2f s; re-cutting it smaller",
                 float(start), size, float(duration))
        limits = self.limits
        return Limits(limits.mode, int(limits.max_bytes * min(0.97, limits.max_bytes / size)),
                      limits.max_duration_ms - 50)

    def _reencode_interval(self, path: str, planned: PlannedChunk, start: Fraction,
                           stretch: Stretch) -> Stretch:
        log.warning("keyframe interval at %.1f s is %d bytes / %.1f s, over the limits; "
                    "re-encoding that stretch only", float(start), planned.expected_bytes,
                    float(planned.duration))
        return self._reencode(path, "0:v:0", start, stretch.depth + 1,
                              seconds=float(planned.duration))

    def _reencode(self, path: str, video_map: str, offset: Fraction, depth: int, *,
                  seconds: float) -> Stretch:
        """Re-encode `seconds` of media from `path` into a new stretch."""
        target = self.work / f"reencode-{next(self._names)}.mp4"
        proc.run(ffargs.reencode_argv(path, str(target), self.limits,
                                      keep_audio=self.options.keep_audio,
                                      overhead=self.options.overhead.fixed, video_map=video_map,
                                      depth=depth),
                 timeout=proc.deadlines().deadline(media_seconds=seconds,
                                                   size_bytes=os.path.getsize(path)))
        info = probe(str(target), keep_audio=self.options.keep_audio)
        return Stretch(info, offset, self.limits, depth + 1, reencoded=True)


def _check_frames(info: VideoInfo, pieces: list[Chunk]) -> None:
    """Stream copy conserves every frame; a re-encode should too, but the decoder may drop some."""
    assert info.scan is not None
    expected, got = len(info.scan.video), sum(p.frames for p in pieces)
    if got == expected:
        return
    if any(p.reencoded for p in pieces):
        log.warning("%s: re-encoded chunks hold %d frames, the source %d", info.path, got,
                    expected)
        return
    raise SegmentError(f"{info.path}: chunks hold {got} frames, the source {expected}")
