"""Run settings: one value composed of small typed parts (as httpx composes a client from its
Timeout and Limits), each checking its own values. The command line builds it from its flags
and the environment (read there, once), a caller from keywords (`Settings.from_options`); the
library reads nothing else.

The parts: where and how requests go (`Api`), what one request may carry (`types.Limits`), how
often frames are sampled, what requests carry (a `send.strategy.Strategy`, owning its own
settings), where chunks are staged (`Staging`), how URL sources are downloaded (`Downloads`),
how long a child process may take (`media.proc.Deadlines`), how the batch treats its inputs
(`Batch`), which outputs are written (`output.exports.Outputs`), and what the run tells the
world beyond its output folder (`Hooks`: a completion callback, a metrics file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from pipeline import validate
from pipeline.errors import ConfigError
from pipeline.media.proc import Deadlines
from pipeline.output.exports import Outputs, parse_exports
from pipeline.output.segments import Rules
from pipeline.send import strategies
from pipeline.send.copy import Copy
from pipeline.send.strategy import Strategy, Travel
from pipeline.types import BACKENDS, MODES, BackendName, Limits, Mode, S3Name

# The most chunks in flight when the rate is learned and --concurrency not given: the rate,
# not the pool, is the limit (ratecontrol.little holds the pool to what the rate needs).
AUTO_CONCURRENCY = 32


@dataclass(frozen=True, kw_only=True)
class Api:
    """Which backend answers, and how requests reach it."""

    backend: BackendName = "local"
    model: str = "nsfw"
    api_base: str | None = None  # HOST:PORT of a Clarifai-compatible server
    insecure: bool = False
    # Credentials and account (CLARIFAI_PAT, CLARIFAI_USER_ID, CLARIFAI_APP_ID); never shown.
    api_key: str | None = field(default=None, repr=False, compare=False)
    user_id: str = "clarifai"
    app_id: str = "main"
    # Request starts a second, retries included: fixed, or "auto" (learned from the answers:
    # backends.adaptive).
    rate_limit: float | Literal["auto"] = "auto"
    concurrency: int | None = None  # chunks in flight; None: by backend (`workers`)
    rate_limit_max: float | None = None  # the most "auto" may reach
    cache_dir: str | None = None  # where learned rates are remembered (None: nowhere)

    def __post_init__(self) -> None:
        validate.one_of("--backend", self.backend, BACKENDS)
        validate.at_least("--concurrency", self.concurrency, 1)
        if isinstance(self.rate_limit, str):
            if self.rate_limit != "auto":
                raise ConfigError(f"--rate-limit takes auto or a number, not {self.rate_limit!r}")
        else:
            validate.at_least("--rate-limit", self.rate_limit, 0, above=True)
        validate.at_least("--rate-limit-max", self.rate_limit_max, 0, above=True)
        if self.rate_limit != "auto" and self.rate_limit_max is not None \
                and self.rate_limit > self.rate_limit_max:
            raise ConfigError(f"--rate-limit {self.rate_limit:g} is above --rate-limit-max "
                              f"{self.rate_limit_max:g}")

    @property
    def adaptive(self) -> bool:
        """The clarifai backend learns its rate (`--rate-limit auto`)."""
        return self.backend == "clarifai" and self.rate_limit == "auto"

    @property
    def workers(self) -> int:
        """Chunks in flight: requests for clarifai (default 4; with a learned rate, at most
        AUTO_CONCURRENCY, as many as the rate and the latency need), decoders for local (one
        a core)."""
        if self.concurrency is not None:
            return self.concurrency
        if self.adaptive:
            return AUTO_CONCURRENCY
        return 4 if self.backend == "clarifai" else 2


@dataclass(frozen=True, kw_only=True)
class Staging:
    """URL mode: where chunks are staged (s3://bucket/prefix), the storage endpoint (None:
    boto3's own settings, AWS_ENDPOINT_URL included), and whether staged chunks are kept."""

    place: S3Name | None = None
    endpoint_url: str | None = None
    keep: bool = False

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not self.endpoint_url.lower().startswith(
                ("http://", "https://")):
            raise ConfigError(f"--s3-endpoint-url takes an http(s) URL, not "
                              f"{self.endpoint_url!r}")


@dataclass(frozen=True, kw_only=True)
class Downloads:
    """URL sources are streamed to a temporary file: at most `max_bytes`, no read waiting more
    than `timeout` s, and in all at most `timeout` plus their size at `min_rate` bytes a
    second."""

    max_bytes: int = 20_000_000_000
    timeout: float = 30.0
    min_rate: float = 50_000.0

    def __post_init__(self) -> None:
        validate.at_least("VIDEO_PIPELINE_DOWNLOAD_MAX_BYTES", self.max_bytes, 1)
        validate.at_least("VIDEO_PIPELINE_DOWNLOAD_TIMEOUT", self.timeout, 0, above=True)
        validate.at_least("VIDEO_PIPELINE_DOWNLOAD_MIN_RATE", self.min_rate, 0, above=True)


@dataclass(frozen=True, kw_only=True)
class Batch:
    """How a run treats its inputs."""

    force: bool = False  # redo videos and chunks already done
    lock_wait: float = 0.0  # seconds to wait for a video another run is working on; 0: skip it
    # A local file is taken once unchanged this long (unless its container says it is whole):
    # a recording still being written is deferred, never processed in part (batch.settle).
    settle_seconds: float = 5.0
    dask: str | None = None  # a Dask scheduler's address, or local[:N]
    progress: bool = True
    # The frames the run may bill (batch.billing): a request past it is not sent. Not part of
    # the run key: a rerun with a larger budget goes on from what was saved.
    max_billed_frames: int | None = None

    def __post_init__(self) -> None:
        validate.at_least("--lock-wait", self.lock_wait, 0)
        validate.at_least("--settle-seconds", self.settle_seconds, 0, at_most=3600)
        validate.at_least("--max-billed-frames", self.max_billed_frames, 0)


@dataclass(frozen=True, kw_only=True)
class Hooks:
    """What the run tells the world beyond --out: a URL POSTed to when each video and the batch
    end (bodies signed with `notify_secret`), and a Prometheus text file of the run's figures."""

    notify: str | None = field(default=None, repr=False)  # may hold a token: never shown
    notify_secret: str | None = field(default=None, repr=False, compare=False)
    metrics_file: str | None = None

    def __post_init__(self) -> None:
        if self.notify is not None:
            if not _http_url(self.notify):
                raise ConfigError("--notify takes an http(s) URL (http://HOST[:PORT]/PATH)")
            if not (self.notify_secret or "").strip():
                raise ConfigError("--notify needs a secret to sign its bodies with: set "
                                  "VIDEO_PIPELINE_NOTIFY_SECRET (notify_secret= in Python)")
        if self.metrics_file is not None and not self.metrics_file.strip():
            raise ConfigError("--metrics-file takes a file path")


def _http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and (
        text.isprintable() and " " not in text)


@dataclass(frozen=True, kw_only=True)
class Settings:
    api: Api = Api()
    limits: Limits = Limits()
    sample_ms: int = 1000
    strategy: Strategy = Copy()
    staging: Staging = Staging()
    downloads: Downloads = Downloads()
    deadlines: Deadlines = Deadlines()
    batch: Batch = Batch()
    outputs: Outputs = Outputs()
    hooks: Hooks = Hooks()

    def __post_init__(self) -> None:
        validate.at_least("--sample-ms", self.sample_ms, 100, at_most=60_000)

    @property
    def sends_urls(self) -> bool:
        """Requests carry URLs the API fetches (URL mode, to an API; the local backend reads
        chunks where they are, so for it URL mode only sets the limits; a strategy whose
        requests always go as bytes keeps to them)."""
        return (self.limits.mode == "url" and self.api.backend == "clarifai"
                and self.strategy.travel is not Travel.BYTES)

    @classmethod
    def from_options(cls, **values: Any) -> Settings:
        """Settings from the command line's option names, as keywords (`max_bytes=2_000_000`,
        `strategy="compact"`, `proxy_size=256`, ...): what a caller or a scheduler's task
        passes. An unknown name is a ConfigError."""
        unknown = sorted(set(values) - OPTION_NAMES)
        if unknown:
            raise ConfigError(f"unknown setting {', '.join(unknown)}")
        strategies.every(values)  # each strategy's settings checked, the chosen one's or not
        return cls(**{name: make(values) for name, make in _PARTS.items()})


def _limits(v: Mapping[str, Any]) -> Limits:
    mode = cast(Mode, v.get("mode", "bytes"))
    validate.one_of("--mode", mode, MODES)
    validate.at_least("--max-bytes", v.get("max_bytes"), 100_000)
    validate.at_least("--max-seconds", v.get("max_seconds"), 1)
    return Limits.for_mode(mode, v.get("max_bytes"), v.get("max_seconds"))


def _staging(v: Mapping[str, Any]) -> Staging:
    stage = v.get("stage")
    return Staging(place=S3Name.parse(stage) if stage is not None else None,
                   endpoint_url=v.get("s3_endpoint_url"), keep=v.get("keep_staged", False))


def _outputs(v: Mapping[str, Any]) -> Outputs:
    rules = Rules(v.get("min_confidence", 0.5), v.get("max_gap_ms"), v.get("min_segment_ms", 0))
    chosen = v.get("export", Outputs().exports)
    if isinstance(chosen, str):  # "csv,srt", as the command line spells it
        try:
            chosen = parse_exports(chosen)
        except ValueError as exc:
            raise ConfigError(f"--export: {exc}") from None
    return Outputs(rules, tuple(chosen), v.get("report", False))


def _part(cls: type[Any], **names: str) -> Any:
    """A part made of the values named `names` (its field: the option's name)."""
    def make(v: Mapping[str, Any]) -> Any:
        return cls(**{f: v[o] for f, o in names.items() if o in v and v[o] is not None})
    return make


_PARTS: dict[str, Any] = {
    "api": _part(Api, backend="backend", model="model", api_base="api_base",
                 insecure="insecure", api_key="api_key", user_id="user_id", app_id="app_id",
                 rate_limit="rate_limit", concurrency="concurrency",
                 rate_limit_max="rate_limit_max", cache_dir="cache_dir"),
    "limits": _limits,
    "sample_ms": lambda v: 1000 if v.get("sample_ms") is None else v["sample_ms"],
    "strategy": lambda v: strategies.named(v.get("strategy", strategies.DEFAULT), v),
    "staging": _staging,
    "downloads": _part(Downloads, max_bytes="download_max_bytes", timeout="download_timeout",
                       min_rate="download_min_rate"),
    "deadlines": _part(Deadlines, probe_timeout="probe_timeout",
                       stall_timeout="ffmpeg_stall_timeout", time_factor="ffmpeg_time_factor"),
    "batch": _part(Batch, force="force", lock_wait="lock_wait", settle_seconds="settle_seconds",
                   dask="dask", progress="progress", max_billed_frames="max_billed_frames"),
    "outputs": _outputs,
    "hooks": _part(Hooks, notify="notify", notify_secret="notify_secret",
                   metrics_file="metrics_file"),
}

# Every option name `from_options` takes: the parts' own, the strategies' settings.
OPTION_NAMES = frozenset({
    "backend", "model", "api_base", "insecure", "api_key", "user_id", "app_id", "rate_limit",
    "concurrency", "mode", "max_bytes", "max_seconds", "sample_ms", "strategy", "stage",
    "s3_endpoint_url", "keep_staged", "download_max_bytes", "download_timeout",
    "download_min_rate", "probe_timeout", "ffmpeg_stall_timeout", "ffmpeg_time_factor",
    "force", "lock_wait", "settle_seconds", "dask", "progress", "min_confidence",
    "max_gap_ms", "min_segment_ms", "export", "report", "notify", "notify_secret",
    "metrics_file", "rate_limit_max", "cache_dir", "max_billed_frames",
    *(f.name for cls in strategies.STRATEGIES.values() for f in cls.settings())})

