"""ffmpeg command lines for cutting and re-encoding (pure: built here, run by `proc`)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from pipeline.media.proc import FFMPEG, input_args, media_input
from pipeline.types import Limits, VideoInfo

# Codecs an MP4 chunk takes by stream copy (others are transcoded to H.264).
MP4_VIDEO_CODECS = {"h264", "hevc", "av1", "vp9", "mpeg2video", "mpeg1video"}
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"}

# Same input, same bytes: no muxer or encoder version strings, no creation times.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def map_args(info: VideoInfo, keep_audio: bool) -> list[str]:
    """The video stream copied, audio kept (copied, or AAC) or dropped, nothing else."""
    args = ["-map", f"0:{info.video.index}", "-c:v", "copy", "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1"]
    audio = info.audio
    if not keep_audio or audio is None:
        return [*args, "-an"]
    codec = ["copy"] if audio.codec in MP4_AUDIO_CODECS else ["aac", "-b:a", "128k"]
    return [*args, "-map", f"0:{audio.index}", "-c:a", *codec]


def segment_argv(info: VideoInfo, cut_frames: Sequence[int], keep_audio: bool,
                 pattern: str) -> list[str]:
    """One segment-muxer pass cutting before each decode-order frame number in `cut_frames`."""
    argv = [FFMPEG, "-v", "error", "-nostdin", "-y", *input_args(info.path),
            *map_args(info, keep_audio), *BITEXACT, "-f", "segment", "-segment_format", "mp4",
            "-reset_timestamps", "1"]
    # Without a cut list the muxer would cut every 2 s (its default segment_time).
    cuts = ",".join(str(n) for n in cut_frames)
    argv += ["-segment_frames", cuts] if cuts else ["-segment_time", "1000000000"]
    return [*argv, pattern]


def reencode_argv(src: str, dst: str, limits: Limits, *, keep_audio: bool = False,
                  overhead: int = 16 * 1024, video_map: str = "0:v:0", depth: int = 0) -> list[str]:
    """H.264 with a keyframe every `gop` seconds and a bit-rate cap that fits 4+ GOPs a chunk.

    One encoder thread: libx264 with a rate cap (VBV) and frame threads gives different bytes
    on every run (three encodes of one 10 s stretch, three outputs; docs/chunking.md), and the
    same input must give the same chunks, so that a resumed run equals an uninterrupted one."""
    gop = max(Fraction(1, 10), min(Fraction(2), limits.max_duration / 4))
    budget = limits.max_bytes - overhead
    maxrate = max(64_000, int(budget * 8 / (4 * gop) / (2 ** max(0, depth - 1))))
    audio = ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "96k"] if keep_audio else ["-an"]
    return [FFMPEG, "-v", "error", "-nostdin", "-y", *input_args(src), "-map", video_map,
            *audio, "-sn", "-dn",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-threads", "1",
            "-maxrate", str(maxrate), "-bufsize", str(int(maxrate * gop)),
            "-force_key_frames", f"expr:gte(t,n_forced*{float(gop)})",
            "-fps_mode", "passthrough", "-map_metadata", "-1", *BITEXACT, "-f", "mp4",
            media_input(dst)]


def first_frames_argv(paths: Sequence[str]) -> list[str]:
    """Decode the first video frame of each file (or of stdin, PIPE_INPUT); any decode error is
    fatal (-xerror)."""
    argv = [FFMPEG, "-v", "error", "-xerror", "-nostdin"]
    for path in paths:
        argv += ["-threads", "1", *input_args(path)]
    for n in range(len(paths)):
        argv += ["-map", f"{n}:v:0", "-frames:v", "1", "-f", "null", "-"]
    return argv


def thumbnails_argv(source: str, seconds: Sequence[float], pattern: str,
                    width: int = 160) -> list[str]:
    """One ffmpeg that writes a small JPEG of the frame shown at each of `seconds` (accurate
    seeks, one decoder thread per input) to `pattern % i`."""
    argv = [FFMPEG, "-v", "error", "-nostdin", "-y"]
    for at in seconds:
        argv += ["-threads", "1", "-ss", f"{at:.3f}", *input_args(source)]
    for i in range(len(seconds)):
        argv += ["-map", f"{i}:v:0", "-frames:v", "1", "-vf", f"scale={width}:-2",
                 "-q:v", "5", pattern % i]
    return argv
