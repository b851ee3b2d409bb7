"""The subcommands: each turns parsed arguments and the environment into a library call and
prints its result. Exit codes and error messages are main's."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import segment
from pipeline._cli import options, render, signals
from pipeline._cli.exits import ExitCode
from pipeline._cli.signals import stop_on_signals
from pipeline.batch.stopping import StopFlag
from pipeline.batch.summary import totals
from pipeline.errors import ConfigError, InputError, Interrupted, io_failure
from pipeline.output import files, formats
from pipeline.probe import probe
from pipeline.send import strategies

if TYPE_CHECKING:
    from pipeline.serve.server import ServeConfig


def emit(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def cmd_probe(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    info = probe(args.video)
    emit(json.dumps(render.probe_dict(info), indent=2) if args.json else render.probe_text(info))
    return ExitCode.OK


def cmd_plan(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    settings = options.settings(args, environ, run=False, strategy=True)
    keep_audio = settings.strategy.keeps_audio
    info = probe(args.video, keep_audio=keep_audio)
    plan = segment.make_plan(info, settings.limits, segment.SegmentOptions(keep_audio=keep_audio))
    found = [s.cost(info, plan, settings.limits, settings.sample_ms)
             for s in strategies.every(options.strategy_values(args, environ))]
    emit(json.dumps(render.plan_dict(info, plan, found, settings.strategy), indent=2)
         if args.json else render.plan_text(info, plan, found, settings.strategy))
    return ExitCode.OK


def cmd_split(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    settings = options.settings(args, environ, run=False, split=True)
    keep_audio = settings.strategy.keeps_audio
    files.prepare_out(args.out)
    info = probe(args.video, keep_audio=keep_audio)
    listing = os.path.join(args.out, "chunks.json")
    try:
        chunks = segment.split(info, settings.limits, args.out,
                               segment.SegmentOptions(keep_audio=keep_audio))
        files.atomic_write_json(listing, formats.chunk_list(info.path, settings.limits, chunks))
    except OSError as exc:
        raise io_failure(exc) or exc from None
    emit("\n".join(f"{c.path}\t{c.start_ms}\t{c.end_ms}\t{c.size_bytes}" for c in chunks))
    emit(f"{len(chunks)} chunks; list in {listing}", err=True)
    return ExitCode.OK


def cmd_run(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    """parse -> settings -> run_batch -> the summary line and the exit code."""
    # Only `run` needs the runner and the progress bar (tqdm): imported here, not for --help.
    from pipeline._cli.progress import Progress
    from pipeline.api import run_batch
    settings = options.settings(args, environ, run=True)
    shown = settings.batch.progress and not settings.batch.dask
    with stop_on_signals(StopFlag()) as stop, (
            Progress() if shown else contextlib.nullcontext()) as progress:
        result = run_batch(args.inputs, args.out, settings=settings, stop=stop,
                           progress=progress)
    if result.interrupted:
        raise Interrupted("stopped before every input was done")
    _warn_hooks(result)
    counts = result.counts
    done = counts["done"] + counts["skipped"]
    found = totals(result.outcomes)
    frames = {name: found[name] for name in ("frames_sampled", "frames_billed",
                                              "frames_carried")}
    if result.summary_error:
        emit(f"video-pipeline: error: summary.json could not be written "
             f"({result.summary_error})", err=True)
    if fmt == "json":
        emit(json.dumps({"inputs": len(result.outcomes), "done": done,
                         "failed": counts["failed"], "deferred": counts["deferred"],
                         "stopped": counts["stopped"], **frames, "out": args.out,
                         "summary": os.path.join(args.out, "summary.json")}))
    else:
        later = (f", {counts['deferred']} deferred (still being written)"
                 if counts["deferred"] else "")
        budget = (f", {counts['stopped']} stopped: billing budget reached (rerun with a larger "
                  "--max-billed-frames to finish)") if counts["stopped"] else ""
        emit(f"{done} of {len(result.outcomes)} inputs done{later}{budget}; frames: "
             f"{frames['frames_sampled']:,} sampled, {frames['frames_billed']:,} billed, "
             f"{frames['frames_carried']:,} carried; results in {args.out}/ "
             f"(summary.json, <VIDEO_ID>/timeline.json)")
    if counts["failed"] or result.summary_error:
        return ExitCode.FAILED
    return ExitCode.BUDGET if counts["stopped"] else ExitCode.OK


def _warn_hooks(result: Any) -> None:
    """Callbacks not delivered, or a metrics file not written: said, the exit code unchanged."""
    report = result.notify
    if report is not None and report.failed:
        emit(f"video-pipeline: warning: {report.failed} of {report.failed + report.delivered} "
             f"--notify callbacks not delivered ({report.last_error}); noted in summary.json",
             err=True)
    if result.metrics_error:
        emit(f"video-pipeline: warning: --metrics-file not written ({result.metrics_error})",
             err=True)


def cmd_report(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    from pipeline.output import report  # matplotlib and the page: only `report` needs them
    rules = options.segment_settings(args, environ).outputs.rules
    path = Path(args.path)
    if (path / "timeline.json").is_file():
        report.write_video_report(path, rules, html=args.html, png=args.png)
        written = [f for f in (args.html, args.png) if f] or [str(path / "report.html")]
    elif (path / "summary.json").is_file():
        if args.png:
            raise InputError(str(path), "--png draws one video's chart; give DIR/VIDEO_ID")
        written = [str(report.write_batch_report(path, rules, html=args.html))]
    else:
        raise InputError(str(path), "neither a video's results (timeline.json) nor a run's "
                                    "--out (summary.json)")
    emit("\n".join(written))
    return ExitCode.OK


def serve_config(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeConfig:
    """serve's settings: its flags, then the environment, then the defaults."""
    # serve's modules (gRPC, the model's code) only for `serve`, not for every command.
    from pipeline.serve.inputs import InputLimits
    from pipeline.serve.server import ServeConfig
    values = options.resolve(args, options.SERVE, environ)
    limits = InputLimits(**{name: values.pop(name) for name in options.SERVE_LIMITS})
    faults = values.pop("fault_codes")
    if faults:  # none named: ServeConfig's default, every retryable code
        values["faults"] = faults
    return ServeConfig(limits=limits, **values)


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    """Serve until SIGTERM or Ctrl-C; requests in flight then have signals.SERVE_GRACE_S to
    finish, and the process ends, whatever they are doing."""
    from pipeline.serve import memory  # serve's modules only for `serve` (see serve_config)
    from pipeline.serve.server import Server
    server = Server(serve_config(args, environ))
    memory.map_large_allocations()
    with signals.event_on_signals() as stop:
        try:
            port = server.start()
        except OSError as exc:
            raise ConfigError(str(exc)) from None
        emit(f"serving on {server.config.host}:{port}", err=True)
        while not stop.wait(0.5):
            pass
        finished = server.stop(signals.SERVE_GRACE_S)
        emit("stopped", err=True)
    if not finished:
        # A request stuck where no check reaches would keep the interpreter waiting for its
        # thread at exit; the log is closed and stderr flushed, so nothing is lost.
        signals.exit_now(ExitCode.OK)
    return ExitCode.OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Mapping[str, str], str], int]] = {
    "probe": cmd_probe, "plan": cmd_plan, "split": cmd_split, "run": cmd_run,
    "report": cmd_report, "serve": cmd_serve}
