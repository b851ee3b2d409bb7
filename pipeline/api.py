"""The Python API: what a workflow scheduler's task (Airflow, Prefect, Dagster) or any program
calls instead of starting `video-pipeline run` as a subprocess; the command line is a thin
layer over it.

    result = pipeline.run_batch(["videos/"], "results", backend="clarifai",
                                api_key=os.environ["CLARIFAI_PAT"], export="csv,otio")
    for outcome in result.outcomes:
        print(outcome.status, outcome.source, outcome.timeline, outcome.error)

`run_batch` takes the settings of `run` by keyword, named as the command line names its options
(snake_case: `max_bytes=2_000_000`, `strategy="compact"`, `notify="https://..."`); nothing is
read from the environment, so credentials (`api_key`, `notify_secret`) are passed too. It
returns one outcome per input, in input order (the entries of summary.json). A setting that is
not usable raises `ConfigError` before anything is processed; a key the API refuses raises
`AuthError` once summary.json is written. Nothing is printed and the process never exits:
logging goes to the `pipeline` logger. Signals are the caller's: pass a `StopFlag` and set it
to stop (chunks in flight finish and are saved; the result says `interrupted`).

`load_timeline` reads a timeline.json into typed values."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline import metrics
from pipeline.batch.stopping import StopFlag
from pipeline.batch.summary import Outcome, Status, add_to_summary, status_counts, totals
from pipeline.errors import AuthError, ConfigError, Interrupted
from pipeline.notify import Notifier, Report
from pipeline.output.files import read_json
from pipeline.settings import Hooks, Settings

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
# Video events: one when each input ends so; inputs skipped as already done send none.
_TOLD = (Status.DONE, Status.FAILED, Status.DEFERRED, Status.STOPPED)
# The run's totals the batch callback carries.
_TOLD_TOTALS = ("requests", "retries", "throttles", "bytes_sent", "frames_billed")


class Progress(Protocol):
    """What the run tells a progress display (the command line's bar is one)."""

    def add(self, total: int, already_done: int) -> None: ...

    def done(self, count: int = 1, *, frames: int = 0) -> None: ...


@dataclass(frozen=True)
class InputOutcome:
    """What happened to one input: summary.json's entry, with the path of its timeline."""

    source: str  # as given (a URL without its query string)
    status: Status  # done, skipped, failed, deferred, stopped (a str: compare with "done")
    id: str | None  # the video's folder name in `out`
    error: str | None  # one sentence, when it failed
    note: str | None  # why it was skipped, deferred or stopped
    timeline: Path | None  # out/ID/timeline.json, when the video is done
    chunks: int = 0
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    frames_sampled: int = 0  # the video's sampled instants
    frames_billed: int = 0  # what this run's requests for it billed
    frames_carried: int = 0  # instants not sent (--skip-similar), carrying a sent frame's

    @classmethod
    def of(cls, outcome: Outcome, out: Path) -> InputOutcome:
        return cls(outcome.source, outcome.status, outcome.id, outcome.error, outcome.note,
                   _timeline_path(outcome, out), outcome.chunks, outcome.requests,
                   outcome.retries, outcome.throttles, outcome.bytes_sent, outcome.seconds,
                   outcome.frames_sampled, outcome.frames_billed, outcome.frames_carried)

    def as_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        return fields | {"status": str(self.status),
                         "timeline": str(self.timeline) if self.timeline else None}


def _timeline_path(outcome: Outcome, out: Path) -> Path | None:
    """out/ID/timeline.json for a video done by this run or found done."""
    found = outcome.status == Status.DONE or (
        outcome.status == Status.SKIPPED and (outcome.note or "").startswith("already done"))
    path = out / outcome.id / "timeline.json" if found and outcome.id else None
    return path if path is not None and path.is_file() else None


@dataclass(frozen=True)
class BatchResult:
    """A run's outcome: one entry per input, and how the run itself ended."""

    out: Path
    outcomes: tuple[InputOutcome, ...]
    interrupted: bool = False  # stopped (the stop flag) before every input was done
    summary_error: str | None = None  # summary.json could not be written
    notify: Report | None = None  # what came of the callbacks, with --notify
    metrics_error: str | None = None  # the metrics file could not be written
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Inputs by status (every status, zero included)."""
        return {str(s): sum(1 for o in self.outcomes if o.status == s) for s in Status}

    @property
    def failed(self) -> tuple[InputOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == Status.FAILED)

    @property
    def stopped(self) -> tuple[InputOutcome, ...]:
        """Inputs left when --max-billed-frames was reached (rerun to finish them)."""
        return tuple(o for o in self.outcomes if o.status == Status.STOPPED)

    @property
    def ok(self) -> bool:
        """Every input done, skipped or deferred, the run not interrupted nor stopped by its
        billing budget, summary.json written (the command line's exit code 0)."""
        return (not self.failed and not self.stopped and not self.interrupted
                and self.summary_error is None)


@dataclass
class _Ran:
    """What an engine gave back."""

    outcomes: list[Outcome]
    summary_error: str | None = None
    interrupted: bool = False
    halt: AuthError | None = None


def run_batch(inputs: PathLike | Iterable[PathLike], out: PathLike, *,
              settings: Settings | None = None, stop: StopFlag | None = None,
              progress: Progress | None = None, **options: Any) -> BatchResult:
    """Process `inputs` (files, folders, manifests, URLs) into `out`, as `video-pipeline run`
    does, with the settings given by keyword (or a `Settings`, not both). Raises ConfigError
    (a setting, nothing processed) or AuthError (the key was refused; summary.json written);
    every other failure is that input's outcome."""
    chosen = _settings(settings, options)
    sources, folder = _inputs(inputs), Path(out)
    if chosen.hooks.metrics_file is not None:
        metrics.check_path(chosen.hooks.metrics_file)
    started, clock = time.time(), time.monotonic()
    notifier = _notifier(chosen.hooks)
    try:
        ran = _drive(dataclasses.replace(chosen, hooks=Hooks()), folder, sources,
                     stop or StopFlag(), progress, notifier)
    except BaseException:
        if notifier is not None:
            notifier.close(wait=False)  # a configuration error: nothing was processed
        raise
    result = _finish(chosen, folder, ran, notifier, started, clock)
    if ran.halt is not None:
        raise ran.halt
    return result


def _settings(settings: Settings | None, options: Mapping[str, Any]) -> Settings:
    if settings is not None and options:
        raise ConfigError(f"give a Settings or settings by keyword, not both "
                          f"({', '.join(sorted(options))})")
    return settings if settings is not None else Settings.from_options(**options)


def _inputs(inputs: PathLike | Iterable[PathLike]) -> list[str]:
    """A single path is one input (not its characters); at least one is needed."""
    listed = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not listed:
        raise ConfigError("no inputs: give video files, folders, manifests or URLs")
    return [os.fspath(i) for i in listed]


def _notifier(hooks: Hooks) -> Notifier | None:
    if hooks.notify is None or hooks.notify_secret is None:
        return None
    return Notifier(hooks.notify, hooks.notify_secret)


def _drive(settings: Settings, out: Path, sources: list[str], stop: StopFlag,
           progress: Progress | None, notifier: Notifier | None) -> _Ran:
    """The run on the engine the settings name, each input's end told as it comes (Dask:
    once the cluster's tasks are collected, at the batch's end)."""
    def tell(outcome: Outcome) -> None:
        if notifier is not None and outcome.status in _TOLD:
            notifier.send(f"video.{outcome.status}",
                          {"out": str(out), "video": InputOutcome.of(outcome, out).as_dict()})

    if settings.batch.dask:
        ran = _on_dask(settings, out, sources, stop)
        for outcome in ran.outcomes:
            tell(outcome)
        return ran
    from pipeline.batch.runner import Runner
    runner = Runner(settings, str(out), progress=progress, stop=stop, on_outcome=tell)
    try:
        return _Ran(runner.run(sources), runner.summary_error)
    except Interrupted:
        return _Ran(runner.outcomes, runner.summary_error, interrupted=True)
    except AuthError as exc:
        return _Ran(runner.outcomes, runner.summary_error, halt=exc)


def _on_dask(settings: Settings, out: Path, sources: list[str], stop: StopFlag) -> _Ran:
    from pipeline.batch import dask_engine
    try:
        return _Ran(dask_engine.run(settings, str(out), sources, stop=stop))
    except Interrupted:
        return _Ran(_outcomes_in_summary(out), interrupted=True)


def _outcomes_in_summary(out: Path) -> list[Outcome]:
    """The outcomes an interrupted Dask run wrote into summary.json."""
    saved = read_json(out / "summary.json")
    entries = saved.get("inputs", []) if isinstance(saved, dict) else []
    names = {f.name for f in dataclasses.fields(Outcome)}
    return [Outcome(**{k: v for k, v in e.items() if k in names}
                    | {"status": Status(e.get("status", "failed"))}) for e in entries]


def _finish(settings: Settings, out: Path, ran: _Ran, notifier: Notifier | None,
            started: float, clock: float) -> BatchResult:
    """The batch event, the callbacks' report in summary.json, the metrics file."""
    result = BatchResult(out, tuple(InputOutcome.of(o, out) for o in ran.outcomes),
                         interrupted=ran.interrupted, summary_error=ran.summary_error)
    if notifier is not None:
        notifier.send("batch.finished", _batch_event(result, ran))
        report = notifier.close()
        result = dataclasses.replace(result, notify=report)
        _note_in_summary(result, report)
    result = dataclasses.replace(result, seconds=time.monotonic() - clock)
    metrics_file = settings.hooks.metrics_file
    if metrics_file is not None:
        result = dataclasses.replace(result, metrics_error=_write_metrics(
            metrics_file, result, ran, started))
    return result


def _batch_event(result: BatchResult, ran: _Ran) -> dict[str, Any]:
    found = totals(ran.outcomes)
    return {"out": str(result.out), "summary": str(result.out / "summary.json"),
            "counts": status_counts(ran.outcomes),
            **{name: found[name] for name in _TOLD_TOTALS},
            "interrupted": result.interrupted, "error": str(ran.halt) if ran.halt else None,
            "ok": result.ok and ran.halt is None}


def _note_in_summary(result: BatchResult, report: Report) -> None:
    if result.summary_error is not None:
        return
    try:
        add_to_summary(result.out, "notify", report.as_dict())
    except (OSError, ValueError) as exc:
        log.error("cannot note the callbacks in summary.json: %s", exc)


def _write_metrics(path: str, result: BatchResult, ran: _Ran, started: float) -> str | None:
    found = totals(ran.outcomes)
    report = result.notify
    figures = metrics.RunFigures(
        videos=status_counts(ran.outcomes), requests=found["requests"],
        retries=found["retries"], throttles=found["throttles"],
        frames_billed=found["frames_billed"], bytes_sent=found["bytes_sent"],
        started=started, ended=started + result.seconds,
        success=result.ok and ran.halt is None,
        notifications={"delivered": report.delivered, "failed": report.failed}
        if report else {})
    try:
        metrics.write(path, figures)
    except OSError as exc:
        log.error("--metrics-file %s: cannot write it: %s", path, exc.strerror or exc)
        return f"{path}: {exc.strerror or exc}"
    return None
