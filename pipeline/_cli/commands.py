"""The subcommands: each turns parsed arguments and the environment into a library call and
prints its result. Exit codes and error messages are main's.

What only `run` or `report` needs (the runner and its backends, tqdm, Pillow, distributed) is
imported inside them: every command, `--help` included, would pay for it here."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import segment
from pipeline._cli import options, render
from pipeline._cli.signals import stop_on_signals
from pipeline.batch.stopping import StopFlag
from pipeline.errors import InputError, io_failure
from pipeline.output import files, formats
from pipeline.probe import probe
from pipeline.send import strategies
from pipeline.serve import cli as serve_cli
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.batch.summary import Outcome

EXIT_OK, EXIT_FAILED = 0, 1


def emit(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def cmd_probe(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    info = probe(args.video)
    emit(json.dumps(render.probe_dict(info), indent=2) if args.json else render.probe_text(info))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    settings = options.settings(args, environ, run=False, strategy=True)
    keep_audio = settings.strategy.keeps_audio
    info = probe(args.video, keep_audio=keep_audio)
    plan = segment.make_plan(info, settings.limits, segment.SegmentOptions(keep_audio=keep_audio))
    found = [s.cost(info, plan, settings.limits, settings.sample_ms)
             for s in strategies.every(options.strategy_values(args, environ))]
    emit(json.dumps(render.plan_dict(info, plan, found, settings.strategy), indent=2)
         if args.json else render.plan_text(info, plan, found, settings.strategy))
    return EXIT_OK


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
    return EXIT_OK


def cmd_run(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    settings = options.settings(args, environ, run=True)
    with stop_on_signals(StopFlag()) as stop:
        if settings.batch.dask:
            from pipeline.batch import dask_engine  # distributed: an optional extra
            outcomes, summary_error = dask_engine.run(settings, args.out, args.inputs,
                                                      stop=stop), None
        else:
            outcomes, summary_error = _run_here(settings, args.out, args.inputs, stop)
    failed = sum(1 for o in outcomes if str(o.status) == "failed")
    deferred = sum(1 for o in outcomes if str(o.status) == "deferred")
    done = len(outcomes) - failed - deferred
    if summary_error:
        emit(f"video-pipeline: error: summary.json could not be written ({summary_error})",
             err=True)
    if fmt == "json":
        emit(json.dumps({"inputs": len(outcomes), "done": done, "failed": failed,
                         "deferred": deferred, "out": args.out,
                         "summary": os.path.join(args.out, "summary.json")}))
    else:
        later = f", {deferred} deferred (still being written)" if deferred else ""
        emit(f"{done} of {len(outcomes)} inputs done{later}; results in {args.out}/ "
             f"(summary.json, <VIDEO_ID>/timeline.json)")
    return EXIT_FAILED if failed or summary_error else EXIT_OK


def _run_here(settings: Settings, out: str, inputs: list[str],
              stop: StopFlag) -> tuple[list[Outcome], str | None]:
    from pipeline._cli.progress import Progress  # tqdm, the runner: see the top
    from pipeline.batch.runner import Runner
    with Progress(enabled=settings.batch.progress) as progress:
        runner = Runner(settings, out, progress=progress, stop=stop)
        return runner.run(inputs), runner.summary_error


def cmd_report(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    from pipeline.output import report  # Pillow: see the top
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
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str], fmt: str) -> int:
    return serve_cli.run(args, environ)


COMMANDS: dict[str, Callable[[argparse.Namespace, Mapping[str, str], str], int]] = {
    "probe": cmd_probe, "plan": cmd_plan, "split": cmd_split, "run": cmd_run,
    "report": cmd_report, "serve": cmd_serve}
