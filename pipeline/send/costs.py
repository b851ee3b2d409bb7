"""What each strategy would cost for one video (pure): requests, bytes to send, frames billed
and the client's CPU time, for `video-pipeline plan`.

Copy's requests come from its chunk plan, and its bytes too (the planner's padded estimate of
each chunk's container). Compact's and frames' depend on
pictures not yet encoded, so they are estimated from rates measured on the 2-core benchmark
machine (bench/bench_strategies.py; Debian 12's ffmpeg 5.1), scaled to the video: bytes by
the output's pixels, the CRF or JPEG quality and the sampling interval; CPU by the source's
pixel rate (decoding every source frame is most of it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from pipeline.sampling import clarifai_grid
from pipeline.send import instants
from pipeline.send.strategy import STRATEGIES, Strategy
from pipeline.types import Limits, Plan, VideoInfo

# Measured on noisy synthetic 720p30 (the benchmark's worst case for bytes; real footage came
# to about 30% fewer): a 320p proxy frame at CRF 30, one sample a second; a 320p JPEG at q 4.
PROXY_BYTES_PER_FRAME = 9_300
JPEG_BYTES_PER_FRAME = 20_000
_REFERENCE_PIXELS = 568 * 320
# Client CPU seconds per hour of 720p30 H.264 (copy: reading sample tables and copying;
# compact and frames: decoding every frame, then scaling and encoding the sampled ones).
CPU_PER_HOUR = {"copy": 4.0, "compact": 266.0, "frames": 234.0}
_REFERENCE_PIXEL_RATE = 1280 * 720 * 30
# Proxy bytes a frame against the sampling interval at one CRF (frames closer in time are
# coded as cheap predictions), measured on real footage: (sample_ms, factor), log-interpolated.
_INTERVAL_FACTORS = ((100, 0.23), (250, 0.42), (500, 0.66), (1000, 1.0), (2000, 1.15))
_MP4_OVERHEAD = (16 * 1024, 16)  # a chunk's container: fixed bytes, and bytes a frame


@dataclass(frozen=True)
class Cost:
    """One strategy's cost for one video; `estimated` when bytes are not known exactly."""

    strategy: str
    requests: int
    bytes: int
    frames_billed: int
    cpu_seconds: float
    estimated: bool

    def as_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy, "requests": self.requests, "bytes": self.bytes,
                "frames_billed": self.frames_billed, "client_cpu_s": round(self.cpu_seconds, 2),
                "estimated": self.estimated}


def costs(info: VideoInfo, plan: Plan, strategy: Strategy, limits: Limits) -> list[Cost]:
    """Every strategy's cost, with `strategy`'s settings for compact and frames."""
    return [_cost(name, info, plan, strategy, limits) for name in STRATEGIES]


def _cost(name: str, info: VideoInfo, plan: Plan, strategy: Strategy, limits: Limits) -> Cost:
    grid = instants.grid(info, strategy.sample_ms)
    cpu = CPU_PER_HOUR[name] * float(instants.span(info)) / 3600
    if name == "copy":
        sent = info.size_bytes if plan.whole else sum(c.expected_bytes for c in plan.chunks)
        # Clarifai samples each chunk from its own start, and bills what it samples.
        billed = sum(clarifai_grid(c.duration, strategy.sample_ms).count for c in plan.chunks)
        return Cost(name, len(plan.chunks), sent, billed, cpu, not plan.whole)
    cpu *= _pixel_rate(info) / _REFERENCE_PIXEL_RATE
    if name == "compact":
        per_frame = _proxy_bytes_per_frame(info, strategy)
        per_chunk = max(1, limits.max_duration_ms // strategy.sample_ms)
        fixed, each = _MP4_OVERHEAD
        total = grid.count * (per_frame + each)
        requests = max(math.ceil(grid.count / per_chunk), math.ceil(total / limits.max_bytes))
        return Cost(name, requests, total + requests * fixed, grid.count, cpu, True)
    per_image = JPEG_BYTES_PER_FRAME * _pixels(info, strategy.image_size) / _REFERENCE_PIXELS
    per_image *= (4 / strategy.image_quality) ** 0.67  # q 2, 4, 8, 16: each step ~0.63x
    total = round(grid.count * per_image)
    requests = max(math.ceil(grid.count / strategy.images_per_request),
                   math.ceil(total / limits.max_bytes))
    return Cost(name, requests, total, grid.count, cpu, True)


def _proxy_bytes_per_frame(info: VideoInfo, strategy: Strategy) -> int:
    pixels = _pixels(info, strategy.proxy_size) / _REFERENCE_PIXELS
    quality = 2 ** ((30 - strategy.crf) / 6)  # x264: 6 CRF steps ~ twice the bytes
    return round(PROXY_BYTES_PER_FRAME * pixels * quality * _interval(strategy.sample_ms))


def _interval(sample_ms: int) -> float:
    points = _INTERVAL_FACTORS
    if sample_ms <= points[0][0]:
        return points[0][1]
    for (a, fa), (b, fb) in zip(points, points[1:], strict=False):
        if sample_ms <= b:
            w = math.log(sample_ms / a) / math.log(b / a)
            return fa + w * (fb - fa)
    return points[-1][1]


def _pixels(info: VideoInfo, side: int) -> float:
    """Pixels of a frame scaled so its short side is `side` (never up)."""
    width, height = info.video.width or 1280, info.video.height or 720
    short = min(width, height)
    scale = min(1.0, side / short)
    return width * height * scale * scale


def _pixel_rate(info: VideoInfo) -> float:
    video = info.video
    rate = video.frame_rate or Fraction(30)
    return (video.width or 1280) * (video.height or 720) * float(rate)
