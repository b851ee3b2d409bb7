"""The one sampler: which source frame stands for each instant of a sampling grid, and the ffmpeg
command lines (pure) that write those frames for the local model (`decode`), as a compact proxy
video, or as RGB for the frames strategy's JPEGs (`stills`). Every strategy samples the same
frames: the frame shown at each instant (the last whose time is <= it), the last frame held past
the end.

Measured choices (research on the 2-core machine, Debian 12's ffmpeg 5.1 / x264 core 164), against
the local backend's exact full-resolution frames at the same instants, on ten minutes of film
(Big Buck Bunny; docs/benchmarks.md):
- Short side 320 (never upscaled): open_nsfw resizes to 256, so nothing is upsampled. Size is
  not where proxies lose: lossless 224-640 px proxies agree as well as one another (mean
  absolute difference 0.016-0.019); neither is the scaler (bicubic measured best) nor the
  double resampling. Compression is.
- Proxy: libx264 CRF 23, preset medium, 4:2:0, at sample_ms >= 1000: 98.2% of labels, mean
  absolute difference 0.020 (CRF 30: 97.8%, 0.026; x264's 4:4:4 and its psnr/ssim tunings
  did not help), at ~2.2x CRF 30's bytes. Shorter intervals take a lower CRF (x264 codes frames
  100 ms apart as cheap predictions): `proxy_crf`.
- CRF without a rate cap is bit-identical from run to run only with a pinned thread count
  (`-threads 2`; the automatic count changes the bytes with the machine).
- JPEG: Pillow from RGB at quality 90, 4:4:4 (`stills`)."""

from __future__ import annotations

import math
from fractions import Fraction

from pipeline import skip
from pipeline.media import proc
from pipeline.sampling import Grid

THREADS = "2"  # pinned: x264's output depends on its thread count
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact"]


def select_vf(grid: Grid) -> str:
    """The filters that keep one frame per instant of `grid`: slot n gets the last frame whose
    time is <= the instant (fps round=up after shifting the instants onto whole slots). The last
    frame is held (tpad) for two steps past the end: the last instants can fall inside its
    display time, and a video shorter than half a step has its one instant after its only
    frame."""
    rate = Fraction(1) / grid.step
    return (f"tpad=stop_mode=clone:stop_duration={float(2 * grid.step):.6f},"
            f"setpts=PTS-STARTPTS-{float(grid.first):.6f}/TB,"
            f"fps=fps={rate.numerator}/{rate.denominator}:round=up")


SIGNATURE_VF = f"scale={skip.SIDE}:{skip.SIDE}:flags=area,format=gray"


def proxy_vf(side: int) -> str:
    """The compact proxy's frames."""
    return f"{short_side_vf(side)},format=yuv420p"


def short_side_vf(side: int) -> str:
    """Scale so the shorter side is `side` (never up), both sides even, aspect kept (portrait
    too: 720x1280 -> 320x568)."""
    return (f"scale=w='if(gte(iw,ih),-2,2*trunc(min({side},iw)/2))'"
            f":h='if(gte(iw,ih),2*trunc(min({side},ih)/2),-2)':flags=bicubic")


def proxy_crf(sample_ms: int) -> int:
    """CRF 23 at one sample a second or fewer; lower as samples come closer (21 at 500 ms, 16 at
    100 ms): the steps that held the stress set's agreement at every interval at CRF 30."""
    return max(16, min(23, round(23 - 2 * math.log2(1000 / sample_ms))))


def proxy_argv(src: str, out: str, grid: Grid, *, side: int, crf: int, keyint: int,
               per_chunk: int, signatures: str | None = None) -> list[str]:
    """One pass: decode `src`, keep the frame at each instant, scale, encode H.264 in MP4 with
    frame n at n * step (timescale 1 ms) lasting one step. A keyframe every `keyint` frames lets
    a chunk end at any multiple of it; x264's own keyframes come no closer than that and no
    further apart than `per_chunk` (a scene-cut IDR would otherwise reset the count).

    With `signatures` (--skip-similar), every frame is a keyframe (no B-frames), so a chunk
    can hold any instants picked from the proxy without encoding again, and the same pass
    writes each frame's signature to that file."""
    if signatures is None:
        keys = ["-g", str(per_chunk), "-keyint_min", str(keyint),
                "-force_key_frames", f"expr:eq(mod(n,{keyint}),0)"]
    else:
        keys = ["-g", "1", "-keyint_min", "1", "-bf", "0"]
    encode = ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-threads", THREADS,
              *keys, *BITEXACT, "-video_track_timescale", "1000", "-f", "mp4"]
    return [proc.FFMPEG, "-v", "error", "-nostdin", "-y", "-threads", THREADS,
            *proc.input_args(src), *_outputs(f"{select_vf(grid)},{proxy_vf(side)}", grid,
                                             encode, f"file:{out}", signatures)]


def shrink_argv(src: str, out: str, first: int, end: int, *, crf: int, keyint: int) -> list[str]:
    """Frames [first, end) of a proxy encoded again, smaller (a higher CRF, keyframes closer),
    when one keyframe interval of it alone is over a request's byte limit; times start at 0
    and keep their spacing."""
    return [proc.FFMPEG, "-v", "error", "-nostdin", "-y", "-threads", THREADS,
            *proc.input_args(src), "-map", "0:v:0",
            "-vf", f"trim=start_frame={first}:end_frame={end},setpts=PTS-STARTPTS",
            "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-threads", THREADS,
            "-g", str(end - first), "-keyint_min", str(keyint),
            "-force_key_frames", f"expr:eq(mod(n,{keyint}),0)", *BITEXACT,
            "-video_track_timescale", "1000", "-f", "mp4", f"file:{out}"]


def _outputs(vf: str, grid: Grid, encode: list[str], out: str,
             signatures: str | None) -> list[str]:
    """The filters and output(s) of a strategy's one pass: `out` encoded; with `signatures`,
    the filtered frames split, a 64x64 gray thumbnail of each (full range) written raw to
    that file (before `out`, which stays the last argument)."""
    frames = ["-frames:v", str(grid.count)]  # each output its own: one alone never stops
    if signatures is None:
        return ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, *frames, *encode, out]
    graph = f"[0:v:0]{vf},split=2[out][sig];[sig]{SIGNATURE_VF}[signature]"
    return ["-filter_complex", graph, "-map", "[signature]", *frames, "-f", "rawvideo",
            f"file:{signatures}", "-map", "[out]", "-an", "-sn", "-dn", *frames, *encode, out]
