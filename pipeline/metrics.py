"""The run's figures for monitoring (--metrics-file PATH): the Prometheus text format, written
with the Prometheus project's client (`write_to_textfile`: a temporary file beside PATH, then a
rename, so node_exporter's textfile collector never reads half a file).

Counters (`_total`) count over every run that wrote the file: each run reads the previous file
and adds its own figures, so they only grow, as counters must, and `increase()` over a day
gives that day's videos, requests, throttles and bytes. A file that is missing or does not
parse starts them again from zero (Prometheus takes that as a counter reset). The
`video_pipeline_last_*` gauges are the last run's own figures; the time of the last
successful run is carried over from the previous file by a run that fails, so an alert on its
age fires however the runs since have ended. One file per job: two jobs writing the same file
would each overwrite the other's counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

PREFIX = "video_pipeline_"
STATUSES = ("done", "skipped", "failed", "deferred")
LAST_SUCCESS = PREFIX + "last_success_timestamp_seconds"
# Counted over runs: (name without _total, help, label); label None: one sample.
COUNTERS = (
    ("runs", "Runs that wrote this file, by whether each succeeded (exit code 0)", "result"),
    ("videos", "Inputs processed, by how each ended", "status"),
    ("requests", "Prediction requests sent, retries included", None),
    ("retries", "Requests sent again after a failed attempt", None),
    ("throttles", "Attempts the API answered with a throttle (slow down)", None),
    ("frames_billed", "Frames the API scored and bills", None),
    ("bytes_sent", "Media bytes the requests carried, every attempt counted", None),
    ("notifications", "Completion callbacks (--notify), by whether each was delivered",
     "result"),
)


@dataclass(frozen=True)
class RunFigures:
    """One run's figures, as summary.json has them (times: seconds since the epoch)."""

    videos: Mapping[str, int]  # by status
    requests: int
    retries: int
    throttles: int
    frames_billed: int
    bytes_sent: int
    started: float
    ended: float
    success: bool
    notifications: Mapping[str, int] = field(default_factory=dict)  # delivered, failed

    def counts(self) -> dict[str, dict[str, float]]:
        """Each counter's samples for this run, by label value ("" when it has no label)."""
        return {
            "runs": {"success": float(self.success), "failure": float(not self.success)},
            "videos": {s: float(self.videos.get(s, 0)) for s in STATUSES},
            "requests": {"": self.requests}, "retries": {"": self.retries},
            "throttles": {"": self.throttles}, "frames_billed": {"": self.frames_billed},
            "bytes_sent": {"": self.bytes_sent},
            "notifications": {r: float(self.notifications.get(r, 0))
                              for r in ("delivered", "failed")},
        }


def check_path(path: str) -> None:
    """ConfigError, before the run, if PATH cannot be the metrics file."""
    target = Path(path)
    if target.suffix != ".prom":
        raise ConfigError(f"--metrics-file must end in .prom (node_exporter's textfile "
                          f"collector reads only those), not {path!r}")
    if target.is_dir() or not target.parent.is_dir():
        raise ConfigError(f"--metrics-file {path}: its folder must exist and the path must "
                          "not be a folder")


def write(path: str, run: RunFigures) -> None:
    """PATH, atomically: the counters carried from the previous file plus this run's figures,
    the last run's gauges, and the last success's time."""
    from prometheus_client import CollectorRegistry, write_to_textfile
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(run, previous(path)))
    write_to_textfile(path, registry)


def previous(path: str) -> dict[tuple[str, str], float]:
    """The values of the file a previous run left, by (sample name, label value); empty when
    there is none or it does not parse."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        text = Path(path).read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("--metrics-file %s: the previous file does not parse (%s); counters start "
                    "again from zero", path, exc)
        return {}
    return {(s.name, next(iter(s.labels.values()), "")): s.value
            for family in families if family.name.startswith(PREFIX) for s in family.samples}


class _Figures:
    """A collector yielding the file's metric families (no `_created` samples: a file for a
    batch job, whose counters start at its first run)."""

    def __init__(self, run: RunFigures, before: Mapping[tuple[str, str], float]) -> None:
        self.run = run
        self.before = before

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily
        counts = self.run.counts()
        for name, help_text, label in COUNTERS:
            family = CounterMetricFamily(PREFIX + name, help_text,
                                         labels=[label] if label else None)
            for value, now in counts[name].items():
                was = self.before.get((f"{PREFIX}{name}_total", value), 0.0)
                family.add_metric([value] if label else [], was + now)
            yield family
        yield from self._gauges()

    def _gauges(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily
        run = self.run
        videos = GaugeMetricFamily(PREFIX + "last_run_videos",
                                   "The last run's inputs, by how each ended", labels=["status"])
        for status in STATUSES:
            videos.add_metric([status], run.videos.get(status, 0))
        yield videos
        yield GaugeMetricFamily(PREFIX + "last_run_duration_seconds",
                                "How long the last run took", value=run.ended - run.started)
        yield GaugeMetricFamily(PREFIX + "last_run_timestamp_seconds",
                                "When the last run ended", value=run.ended)
        yield GaugeMetricFamily(PREFIX + "last_run_success",
                                "1 if the last run succeeded (exit code 0), else 0",
                                value=float(run.success))
        last = run.ended if run.success else self.before.get((LAST_SUCCESS, ""))
        if last is not None:
            yield GaugeMetricFamily(LAST_SUCCESS, "When the last successful run ended",
                                    value=last)
