"""Cutting passes: one ffmpeg segment-muxer pass, or chunks written straight from an MP4's
sample table; and the decode check that catches a chunk that does not decode."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.errors import FFmpegError, SegmentError, UndecodableChunk
from pipeline.media import ffargs, mp4write, proc
from pipeline.types import Plan, VideoInfo


def segment_pass(info: VideoInfo, plan: Plan, keep_audio: bool, dest: Path) -> list[str]:
    dest.mkdir(parents=True)
    proc.run(ffargs.segment_argv(info, [c.first_packet for c in plan.chunks[1:]],
                                 keep_audio, proc.media_input(str(dest / "part-%05d.mp4"))),
             timeout=proc.deadlines().deadline(media_seconds=info.duration_ms / 1000,
                                               size_bytes=info.size_bytes))
    files = sorted(str(p) for p in dest.iterdir())
    if len(files) != len(plan.chunks):
        raise SegmentError(
            f"{info.path}: the segment muxer wrote {len(files)} chunks, the plan has "
            f"{len(plan.chunks)}")
    check_decodes(sorted({files[0], files[-1]}))
    return files


def write_pass(info: VideoInfo, plan: Plan, dest: Path) -> list[str]:
    """The MP4 fast path: each chunk's moov built from the source's sample table, its samples
    copied by the kernel (mp4write); the same chunks the segment muxer would write. The first
    chunk is written first and decoded while the others are written: every chunk carries the
    same sample description and the source's own sample bytes, which are checked structurally."""
    assert info.table is not None
    dest.mkdir(parents=True)
    files = [str(dest / f"part-{c.index:05d}.mp4") for c in plan.chunks]
    fd = os.open(info.path, os.O_RDONLY)
    try:
        # Two writers: the copying happens in system calls, which release the GIL.
        with ThreadPoolExecutor(2) as pool:
            written = [pool.submit(mp4write.write_chunk, fd, info.table, c.first_packet,
                                   c.end_packet, path) for c, path in zip(plan.chunks, files,
                                                                           strict=True)]
            written[0].result()
            with ThreadPoolExecutor(1) as checker:
                checked = checker.submit(check_decodes, files[:1])
                for future in written:
                    future.result()
                checked.result()
    finally:
        os.close(fd)
    return files


def check_decodes(paths: list[str]) -> None:
    """Decode the first frame of each chunk named (one ffmpeg process per core's share).

    Every chunk's structure is verified (size, duration, frames, a keyframe first); decoding
    costs ~50 ms a chunk (ffmpeg probes each input), so each cutting pass decodes its first
    chunk (and the segment muxer's last), re-encoded stretches included."""
    batches = [paths[i::2] for i in range(2) if paths[i::2]]
    with ThreadPoolExecutor(len(batches) or 1) as pool:
        for failure in pool.map(_first_frames_fail, batches):
            if failure is not None:
                raise UndecodableChunk(failure)


def _first_frames_fail(paths: list[str]) -> str | None:
    size = sum(os.path.getsize(p) for p in paths)
    try:
        proc.run(ffargs.first_frames_argv(paths),
                 timeout=proc.deadlines().deadline(size_bytes=size))
    except FFmpegError as exc:
        return exc.summary
    return None


def check_decodes_bytes(data: bytes) -> None:
    """Decode the first frame of a chunk built in memory (fed to ffmpeg's stdin)."""
    try:
        proc.run(ffargs.first_frames_argv([proc.PIPE_INPUT]), stdin=data,
                 timeout=proc.deadlines().deadline(size_bytes=len(data)))
    except FFmpegError as exc:
        raise UndecodableChunk(exc.summary) from exc
