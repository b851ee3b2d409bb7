"""Run settings: one keyword-only value, built by the command line from its flags and the
environment (read there, once), or by a caller; the library reads nothing else."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.errors import ConfigError
from pipeline.media.proc import Deadlines
from pipeline.output.exports import EXPORTS, Outputs
from pipeline.output.segments import Rules
from pipeline.send.s3 import S3Name
from pipeline.types import Limits, Mode

BACKENDS = ("local", "clarifai")
MODES = ("bytes", "url")
STRATEGIES = ("copy", "compact", "frames")


@dataclass(frozen=True, kw_only=True)
class Settings:
    backend: str = "local"
    model: str = "nsfw"
    mode: Mode = "bytes"
    max_bytes: int | None = None
    max_seconds: float | None = None
    sample_ms: int = 1000
    # What requests carry (pipeline/send/strategy.py): the chunks (copy), a proxy of the sampled
    # frames (compact: its short side and x264 CRF, None = by sample_ms), or the sampled frames
    # as JPEGs (frames: their short side, mjpeg quality, images a request).
    strategy: str = "copy"
    proxy_size: int = 320
    proxy_crf: int | None = None
    image_size: int = 320
    image_quality: int = 4
    images_per_request: int = 128
    concurrency: int | None = None
    rate_limit: float = 10.0
    keep_audio: bool = False
    api_base: str | None = None
    insecure: bool = False
    force: bool = False
    progress: bool = True
    dask: str | None = None
    lock_wait: float = 0.0  # seconds to wait for a video another run is working on; 0: skip it
    # URL mode: where chunks are staged (s3://bucket/prefix), the storage endpoint (None:
    # boto3's own settings, AWS_ENDPOINT_URL included), and whether staged chunks are kept.
    stage: str | None = None
    s3_endpoint_url: str | None = None
    keep_staged: bool = False
    # Outputs: segment rules (None: a gap of one sample), exports, report.html.
    min_confidence: float = 0.5
    max_gap_ms: int | None = None
    min_segment_ms: int = 0
    export: tuple[str, ...] = EXPORTS
    report: bool = False
    # Credentials and account (CLARIFAI_PAT, CLARIFAI_USER_ID, CLARIFAI_APP_ID); never shown.
    api_key: str | None = field(default=None, repr=False, compare=False)
    user_id: str = "clarifai"
    app_id: str = "main"
    # URL inputs are streamed to a temporary file: at most this many bytes, this long idle.
    download_max_bytes: int = 20_000_000_000
    download_timeout: float = 30.0
    # A local file is taken once unchanged this long (unless its container says it is whole):
    # a recording still being written is deferred, never processed in part (batch.settle).
    settle_seconds: float = 5.0
    # ...and, overall, at most download_timeout plus its size at this many bytes a second.
    download_min_rate: float = 50_000.0
    # Every ffprobe/ffmpeg runs under a deadline (media.proc.Deadlines): a header read gets
    # probe_timeout s; a pass over media that plus ffmpeg_time_factor s a second of media; a
    # streamed decode is killed once its output stands still for ffmpeg_stall_timeout s.
    probe_timeout: float = 60.0
    ffmpeg_stall_timeout: float = 120.0
    ffmpeg_time_factor: float = 10.0

    def __post_init__(self) -> None:
        _one_of("--backend", self.backend, BACKENDS)
        _one_of("--mode", self.mode, MODES)
        _at_least("--max-bytes", self.max_bytes, 100_000)
        _at_least("--max-seconds", self.max_seconds, 1)
        _at_least("--sample-ms", self.sample_ms, 100, at_most=60_000)
        _one_of("--strategy", self.strategy, STRATEGIES)
        _at_least("--proxy-size", self.proxy_size, 64, at_most=4096)
        _at_least("--proxy-crf", self.proxy_crf, 0, at_most=51)
        _at_least("--image-size", self.image_size, 64, at_most=4096)
        _at_least("--image-quality", self.image_quality, 2, at_most=31)
        _at_least("--images-per-request", self.images_per_request, 1, at_most=128)
        _at_least("--concurrency", self.concurrency, 1)
        _at_least("--lock-wait", self.lock_wait, 0)
        _at_least("--rate-limit", self.rate_limit, 0, above=True)
        _at_least("--min-confidence", self.min_confidence, 0, at_most=1)
        _at_least("--max-gap-ms", self.max_gap_ms, 0)
        _at_least("--min-segment-ms", self.min_segment_ms, 0)
        unknown = sorted(set(self.export) - set(EXPORTS))
        if unknown:
            raise ConfigError(f"--export: unknown export {', '.join(unknown)}")
        _at_least("VIDEO_PIPELINE_DOWNLOAD_MAX_BYTES", self.download_max_bytes, 1)
        _at_least("VIDEO_PIPELINE_DOWNLOAD_TIMEOUT", self.download_timeout, 0, above=True)
        _at_least("--settle-seconds", self.settle_seconds, 0, at_most=3600)
        _at_least("VIDEO_PIPELINE_DOWNLOAD_MIN_RATE", self.download_min_rate, 0, above=True)
        _at_least("VIDEO_PIPELINE_PROBE_TIMEOUT", self.probe_timeout, 0, above=True)
        _at_least("VIDEO_PIPELINE_FFMPEG_STALL_TIMEOUT", self.ffmpeg_stall_timeout, 0,
                  above=True)
        _at_least("VIDEO_PIPELINE_FFMPEG_TIME_FACTOR", self.ffmpeg_time_factor, 0, above=True)
        if self.stage is not None:
            S3Name.parse(self.stage)
        if self.s3_endpoint_url is not None and not self.s3_endpoint_url.lower().startswith(
                ("http://", "https://")):
            raise ConfigError("--s3-endpoint-url takes an http(s) URL, not "
                              f"{self.s3_endpoint_url!r}")

    @property
    def limits(self) -> Limits:
        return Limits.for_mode(self.mode, self.max_bytes, self.max_seconds)

    @property
    def sends_urls(self) -> bool:
        """Requests carry URLs the API fetches (URL mode, to an API; the local backend reads
        chunks where they are, so for it URL mode only sets the limits; frames' images always
        travel as bytes)."""
        return self.mode == "url" and self.backend == "clarifai" and self.strategy != "frames"

    @property
    def outputs(self) -> Outputs:
        rules = Rules(self.min_confidence, self.max_gap_ms, self.min_segment_ms)
        return Outputs(rules, tuple(e for e in EXPORTS if e in self.export), self.report)

    @property
    def deadlines(self) -> Deadlines:
        """The deadlines every ffprobe/ffmpeg of the run is held to."""
        return Deadlines(self.probe_timeout, self.ffmpeg_stall_timeout, self.ffmpeg_time_factor)

    @property
    def workers(self) -> int:
        """Chunks in flight: requests for clarifai (default 4), decoders for local (one a core)."""
        if self.concurrency is not None:
            return self.concurrency
        return 4 if self.backend == "clarifai" else 2


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        choices = " or ".join(allowed) if len(allowed) == 2 else "one of " + ", ".join(allowed)
        raise ConfigError(f"{name} must be {choices}, not {value!r}")


def _at_least(name: str, value: float | None, low: float, *, at_most: float | None = None,
              above: bool = False) -> None:
    """A finite number >= low (> low with `above`) and <= at_most; None means unset."""
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {value}")
    if value < low or (above and value == low) or (at_most is not None and value > at_most):
        span = f"between {low:g} and {at_most:g}" if at_most is not None else (
            f"above {low:g}" if above else f"at least {low:g}")
        raise ConfigError(f"{name} must be {span}, not {value:g}")
