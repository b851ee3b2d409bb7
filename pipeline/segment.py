"""Segment: cut a video into chunk files that fit the limits, losing and duplicating no frame.

One segment-muxer pass cuts every chunk by stream copy at planned keyframes (by decode-order
frame number: the muxer's time-based cuts are shifted by the codec delay, measured-facts.md).
Each chunk is then verified; one that came out over the limit is planned again and re-cut, and a
keyframe interval that alone cannot fit is re-encoded with short, bit-rate-capped GOPs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pipeline import mp4, mp4write, proc
from pipeline.errors import FFmpegError, InputError, SegmentError, UndecodableChunk
from pipeline.plan import Overhead, plan_chunks, whole_plan
from pipeline.probe import probe
from pipeline.types import Chunk, Limits, Plan, PlannedChunk, VideoInfo

log = logging.getLogger(__name__)

# Codecs an MP4 chunk takes by stream copy (others are transcoded to H.264).
MP4_VIDEO_CODECS = {"h264", "hevc", "av1", "vp9", "mpeg2video", "mpeg1video"}
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"}
_MAX_DEPTH = 4


@dataclass(frozen=True)
class SegmentOptions:
    keep_audio: bool = False
    overhead: Overhead = Overhead()


def fits_whole(info: VideoInfo, limits: Limits) -> bool:
    """A video under both limits is sent as it is."""
    return info.size_bytes <= limits.max_bytes and info.duration_ms <= limits.max_duration_ms


def copyable(info: VideoInfo) -> bool:
    """Whether the video stream can be copied into an MP4 chunk untouched."""
    codec = info.video.codec
    return codec in MP4_VIDEO_CODECS or (codec == "mpeg4" and "mp4" in info.container)


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
          options: SegmentOptions = SegmentOptions()) -> list[Chunk]:
    """Write the chunks of `info` into `out_dir` and return them, verified, in order."""
    plan = make_plan(info, limits, options)
    if plan.whole:
        only = plan.chunks[0]
        return [Chunk(0, info.path, Fraction(0), only.end - only.start, info.size_bytes,
                      only.frames)]
    try:
        with _work_dir(out_dir, ".work") as work:
            pieces = _cut_video(info, plan, limits, options, work, Fraction(0), depth=0)
            _check_frames(info, pieces)
            for old in Path(out_dir).glob("chunk-*.mp4"):
                old.unlink()
            return _place(pieces, Path(out_dir), "chunk-{:05d}.mp4")
    except FFmpegError as exc:
        raise InputError(info.path, f"ffmpeg could not cut it ({exc.summary})") from exc
    except UndecodableChunk as exc:
        raise InputError(info.path, f"a chunk does not decode ({exc})") from exc


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


def _place(pieces: list[Chunk], out_dir: Path, name: str,
           reencoded: bool = False) -> list[Chunk]:
    """Move the pieces, in time order, to `out_dir` under `name` (formatted with the index)."""
    final: list[Chunk] = []
    for i, piece in enumerate(sorted(pieces, key=lambda c: c.start)):
        target = out_dir / name.format(i)
        os.replace(piece.path, target)
        final.append(dataclasses.replace(piece, index=i, path=str(target),
                                         reencoded=piece.reencoded or reencoded))
    return final


def _cut_video(info: VideoInfo, plan: Plan, limits: Limits, options: SegmentOptions,
               work: Path, offset: Fraction, depth: int) -> list[Chunk]:
    if depth > _MAX_DEPTH:
        raise SegmentError(f"{info.path}: could not make chunks under {limits.max_bytes} bytes")
    if not copyable(info):
        log.warning("%s: %s video is transcoded to H.264 before cutting", info.path,
                    info.video.codec)
        return _reencode_and_cut(info.path, f"0:{info.video.index}", limits, options, work,
                                 offset, depth)
    dest = work / f"d{depth}-{_uid(work)}"
    if info.table is not None and not options.keep_audio:
        files = _write_pass(info, plan, dest)
    else:
        files = _segment_pass(info, plan, options, dest)
    pieces: list[Chunk] = []
    for planned, path in zip(plan.chunks, files, strict=True):
        start = offset + planned.start - plan.origin
        pieces.extend(_verify_or_recut(planned, path, start, limits, options, work, depth))
    return pieces


def _uid(work: Path) -> int:
    return sum(1 for _ in work.iterdir())


def _segment_pass(info: VideoInfo, plan: Plan, options: SegmentOptions, dest: Path) -> list[str]:
    dest.mkdir(parents=True)
    cuts = ",".join(str(c.first_packet) for c in plan.chunks[1:])
    argv = [proc.FFMPEG, "-v", "error", "-nostdin", "-y", "-i", info.path,
            *_map_args(info, options), "-f", "segment", "-segment_format", "mp4",
            "-reset_timestamps", "1"]
    # Without a cut list the muxer would cut every 2 s (its default segment_time).
    argv += ["-segment_frames", cuts] if cuts else ["-segment_time", "1000000000"]
    proc.run([*argv, str(dest / "part-%05d.mp4")])
    files = sorted(str(p) for p in dest.iterdir())
    if len(files) != len(plan.chunks):
        raise SegmentError(
            f"{info.path}: the segment muxer wrote {len(files)} chunks, the plan has "
            f"{len(plan.chunks)}")
    check_decodes(sorted({files[0], files[-1]}))
    return files


def _write_pass(info: VideoInfo, plan: Plan, dest: Path) -> list[str]:
    """The MP4 fast path: each chunk's moov built from the source's sample table, its samples
    copied by the kernel (mp4write); the same chunks the segment muxer would write. The first
    chunk is written first and decoded while the others are written: every chunk carries the
    same sample description and the source's own sample bytes, which are checked structurally."""
    assert info.table is not None
    dest.mkdir(parents=True)
    files = [str(dest / f"part-{c.index:05d}.mp4") for c in plan.chunks]
    table = info.table
    ends = [0]
    order = list(range(len(files)))
    fd = os.open(info.path, os.O_RDONLY)
    try:
        # Two writers: the copying happens in system calls, which release the GIL.
        with ThreadPoolExecutor(2) as pool:
            written = {i: pool.submit(mp4write.write_chunk, fd, table, plan.chunks[i].first_packet,
                                      plan.chunks[i].end_packet, files[i]) for i in order}
            for i in ends:
                written[i].result()
            with ThreadPoolExecutor(1) as checker:
                checked = checker.submit(check_decodes, [files[i] for i in ends])
                for future in written.values():
                    future.result()
                checked.result()
    finally:
        os.close(fd)
    return files


def _map_args(info: VideoInfo, options: SegmentOptions) -> list[str]:
    args = ["-map", f"0:{info.video.index}", "-c:v", "copy", "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1"]
    audio = info.audio
    if not options.keep_audio or audio is None:
        return [*args, "-an"]
    codec = ["copy"] if audio.codec in MP4_AUDIO_CODECS else ["aac", "-b:a", "128k"]
    return [*args, "-map", f"0:{audio.index}", "-c:a", *codec]


def _verify_or_recut(planned: PlannedChunk, path: str, start: Fraction, limits: Limits,
                     options: SegmentOptions, work: Path, depth: int) -> list[Chunk]:
    size = os.path.getsize(path)
    track = mp4.video_track(path)
    if track is None or not track.starts_on_keyframe:
        raise SegmentError(f"{path}: the chunk written is not a readable MP4 starting on a "
                           "keyframe")
    if planned.reencode:
        log.warning("keyframe interval at %.1f s is %d bytes / %.1f s, over the limits; "
                    "re-encoding that stretch only", float(start), planned.expected_bytes,
                    float(planned.duration))
        return _reencode_and_cut(path, "0:v:0", limits, options, work, start, depth + 1)
    chunk = Chunk(planned.index, path, start, start + planned.duration, size, track.frames)
    if size <= limits.max_bytes and track.duration <= limits.max_duration:
        return [chunk]
    log.info("chunk at %.1f s came out at %d bytes / %.2f s; re-cutting it smaller",
             float(start), size, float(track.duration))
    tighter = Limits(limits.mode, int(limits.max_bytes * min(0.97, limits.max_bytes / size)),
                     limits.max_duration_ms - 50)
    sub = probe(path, keep_audio=options.keep_audio)
    assert sub.scan is not None
    pieces = _cut_video(sub, plan_chunks(sub.scan, tighter, options.overhead), limits, options,
                        work, start, depth + 1)
    return pieces


def _reencode_and_cut(path: str, video_map: str, limits: Limits, options: SegmentOptions,
                      work: Path, offset: Fraction, depth: int) -> list[Chunk]:
    target = work / f"reencode-{_uid(work)}.mp4"
    proc.run(reencode_argv(path, str(target), limits, options, video_map=video_map, depth=depth))
    sub = probe(str(target), keep_audio=options.keep_audio)
    assert sub.scan is not None
    plan = plan_chunks(sub.scan, limits, options.overhead)
    pieces = _cut_video(sub, plan, limits, options, work, offset, depth + 1)
    return [dataclasses.replace(p, reencoded=True) for p in pieces]


def reencode_argv(src: str, dst: str, limits: Limits, options: SegmentOptions, *,
                  video_map: str = "0:v:0", depth: int = 0) -> list[str]:
    """H.264 with a keyframe every `gop` seconds and a bit-rate cap that fits 4+ GOPs a chunk."""
    gop = max(Fraction(1, 10), min(Fraction(2), limits.max_duration / 4))
    budget = limits.max_bytes - options.overhead.fixed
    maxrate = max(64_000, int(budget * 8 / (4 * gop) / (2 ** max(0, depth - 1))))
    audio = ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "96k"] if options.keep_audio else ["-an"]
    return [proc.FFMPEG, "-v", "error", "-nostdin", "-y", "-i", src, "-map", video_map,
            *audio, "-sn", "-dn",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-maxrate", str(maxrate), "-bufsize", str(int(maxrate * gop)),
            "-force_key_frames", f"expr:gte(t,n_forced*{float(gop)})",
            "-fps_mode", "passthrough", "-map_metadata", "-1", "-f", "mp4", dst]


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


def check_decodes(paths: list[str]) -> None:
    """Decode the first frame of each chunk named (one ffmpeg process per core's share).

    Every chunk's structure is verified (size, duration, frames, a keyframe first); decoding
    costs ~50 ms a chunk (ffmpeg probes each input), so each cutting pass decodes its first and
    last chunk, re-encoded stretches included."""
    batches = [paths[i::2] for i in range(2) if paths[i::2]]
    with ThreadPoolExecutor(len(batches) or 1) as pool:
        for failure in pool.map(_first_frames_fail, batches):
            if failure is not None:
                raise UndecodableChunk(failure)


def _first_frames_fail(paths: list[str]) -> str | None:
    argv = [proc.FFMPEG, "-v", "error", "-xerror", "-nostdin"]  # a decode error is fatal
    for path in paths:
        argv += ["-threads", "1", "-i", path]
    for n in range(len(paths)):
        argv += ["-map", f"{n}:v:0", "-frames:v", "1", "-f", "null", "-"]
    try:
        proc.run(argv)
    except FFmpegError as exc:
        return exc.summary
    return None


def resplit(chunk: Chunk, limits: Limits, out_dir: str,
            options: SegmentOptions = SegmentOptions()) -> list[Chunk]:
    """Cut one chunk again under `limits` (the API said it was too large or too slow); the
    pieces' times stay on the source timeline."""
    info = probe(chunk.path, keep_audio=options.keep_audio)
    assert info.scan is not None
    plan = plan_chunks(info.scan, limits, options.overhead)
    if len(plan.chunks) < 2 and not plan.chunks[0].reencode:
        raise SegmentError(f"{chunk.path}: a single keyframe interval; cannot cut it smaller")
    try:
        with _work_dir(out_dir, f".work-{chunk.index}") as work:
            pieces = _cut_video(info, plan, limits, options, work, chunk.start, depth=1)
            return _place(pieces, Path(out_dir), f"chunk-{chunk.index:05d}-{{:03d}}.mp4",
                          reencoded=chunk.reencoded)
    except FFmpegError as exc:
        raise SegmentError(f"{chunk.path}: could not re-cut it ({exc.summary})") from exc
