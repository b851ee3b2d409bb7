"""What sending a video would cost (pure), for `video-pipeline plan`: the rates the strategies'
`cost` methods price themselves with.

Copy's requests and bytes come from its chunk plan (the planner's padded estimate of each
chunk's container). Compact's and frames' depend on pictures not yet encoded, so they are
estimated from rates measured on the 2-core benchmark machine (bench/bench_strategies.py;
Debian 12's ffmpeg 5.1), scaled to the video: bytes by the output's pixels, the CRF or JPEG
quality and the sampling interval; CPU by the source's pixel rate (decoding every source frame
is most of it)."""

from __future__ import annotations

import math
from fractions import Fraction

from pipeline.send import instants
from pipeline.types import VideoInfo

# Measured on noisy synthetic 720p30 (the benchmark's worst case for bytes; real footage came
# to about 30% fewer): a 320p proxy frame at CRF 30, one sample a second (at the default CRF 23:
# 22.4 KB); a 320p JPEG at quality 90, 4:4:4 (Pillow).
PROXY_BYTES_PER_FRAME = 9_300
JPEG_BYTES_PER_FRAME = 20_000
_REFERENCE_PIXELS = 568 * 320
_REFERENCE_PIXEL_RATE = 1280 * 720 * 30
# Proxy bytes a frame against the sampling interval at one CRF (frames closer in time are
# coded as cheap predictions), measured on real footage: (sample_ms, factor), log-interpolated.
_INTERVAL_FACTORS = ((100, 0.23), (250, 0.42), (500, 0.66), (1000, 1.0), (2000, 1.15))
MP4_OVERHEAD = (16 * 1024, 16)  # a chunk's container: fixed bytes, and bytes a frame


def cpu_seconds(info: VideoInfo, per_hour: float, *, decodes: bool) -> float:
    """Client CPU seconds for the video at `per_hour` seconds an hour of 720p30 H.264; a
    strategy that `decodes` every frame scales with the source's pixel rate."""
    cpu = per_hour * float(instants.span(info)) / 3600
    return cpu * _pixel_rate(info) / _REFERENCE_PIXEL_RATE if decodes else cpu


def proxy_bytes_per_frame(info: VideoInfo, side: int, crf: int, sample_ms: int) -> int:
    pixels = pixels_at(info, side) / _REFERENCE_PIXELS
    quality = 2 ** ((30 - crf) / 6)  # x264: 6 CRF steps ~ twice the bytes
    return round(PROXY_BYTES_PER_FRAME * pixels * quality * _interval(sample_ms))


def jpeg_bytes_per_image(info: VideoInfo, side: int, quality: int) -> float:
    per_image = JPEG_BYTES_PER_FRAME * pixels_at(info, side) / _REFERENCE_PIXELS
    scale: float = ((100 - 90) / (100 - quality)) ** 0.5  # film: q 80 0.68x, 95 1.44x
    return per_image * scale


def requests_for(count: int, per_request: int, total_bytes: float, max_bytes: int) -> int:
    """Requests for `count` items, at most `per_request` and `max_bytes` each."""
    return max(math.ceil(count / per_request), math.ceil(total_bytes / max_bytes))


def _interval(sample_ms: int) -> float:
    points = _INTERVAL_FACTORS
    if sample_ms <= points[0][0]:
        return points[0][1]
    for (a, fa), (b, fb) in zip(points, points[1:], strict=False):
        if sample_ms <= b:
            w = math.log(sample_ms / a) / math.log(b / a)
            return fa + w * (fb - fa)
    return points[-1][1]


def pixels_at(info: VideoInfo, side: int) -> float:
    """Pixels of a frame scaled so its short side is `side` (never up)."""
    width, height = info.video.width or 1280, info.video.height or 720
    short = min(width, height)
    scale = min(1.0, side / short)
    return width * height * scale * scale


def _pixel_rate(info: VideoInfo) -> float:
    video = info.video
    rate = video.frame_rate or Fraction(30)
    return (video.width or 1280) * (video.height or 720) * float(rate)
