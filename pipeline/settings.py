"""Run settings: one keyword-only value built by the CLI (or a caller) and read everywhere."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.types import Limits, Mode


@dataclass(frozen=True, kw_only=True)
class Settings:
    backend: str = "local"
    model: str = "nsfw"
    mode: Mode = "bytes"
    max_bytes: int | None = None
    max_seconds: float | None = None
    sample_ms: int = 1000
    concurrency: int | None = None
    rate_limit: float = 10.0
    keep_audio: bool = False
    api_base: str | None = None
    insecure: bool = False
    force: bool = False
    progress: bool = True
    dask: str | None = None
    lock_wait: float = 0.0  # seconds to wait for a video another run is working on; 0: skip it

    def __post_init__(self) -> None:
        if self.backend not in ("local", "clarifai"):
            raise ConfigError(f"--backend must be local or clarifai, not {self.backend!r}")
        if self.mode not in ("bytes", "url"):
            raise ConfigError(f"--mode must be bytes or url, not {self.mode!r}")
        if self.max_bytes is not None and self.max_bytes < 100_000:
            raise ConfigError(f"--max-bytes must be at least 100000, not {self.max_bytes}")
        if self.max_seconds is not None and self.max_seconds < 1:
            raise ConfigError(f"--max-seconds must be at least 1, not {self.max_seconds}")
        if not 100 <= self.sample_ms <= 60_000:
            raise ConfigError(f"--sample-ms must be between 100 and 60000, not {self.sample_ms}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, not {self.concurrency}")
        if self.lock_wait < 0:
            raise ConfigError(f"--lock-wait must be 0 or more, not {self.lock_wait}")
        if self.rate_limit <= 0:
            raise ConfigError(f"--rate-limit must be above 0, not {self.rate_limit}")

    @property
    def limits(self) -> Limits:
        return Limits.for_mode(self.mode, self.max_bytes, self.max_seconds)

    @property
    def workers(self) -> int:
        """Chunks in flight: requests for clarifai (default 4), decoders for local (one a core)."""
        if self.concurrency is not None:
            return self.concurrency
        return 4 if self.backend == "clarifai" else 2
