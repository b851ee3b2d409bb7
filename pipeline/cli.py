"""The command line: parse into settings, call the library, turn errors into messages and exit
codes.

Exit codes: 0 every input done (or skipped as already done); 1 at least one input failed (the
others are done and kept); 2 usage or configuration error, nothing processed; 130 interrupted."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pipeline import __version__
from pipeline.errors import AuthError, ConfigError, InputError, Interrupted, PipelineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
log = logging.getLogger("pipeline")


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"VIDEO_PIPELINE_{name.upper().replace('-', '_')}", default)


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=["bytes", "url"], default=_env("mode", "bytes"),
                   help="how chunks are sent: bytes (10 MB) or url (80 MB); both 600 s")
    p.add_argument("--max-bytes", type=int, default=_env("max_bytes"),
                   help="largest chunk in bytes (default: the mode's limit)")
    p.add_argument("--max-seconds", type=float, default=_env("max_seconds"),
                   help="longest chunk in seconds (default 600)")
    p.add_argument("--keep-audio", action="store_true", default=bool(_env("keep_audio")),
                   help="keep the audio track in chunks (dropped by default: models are visual)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-pipeline", description=(
        "Cut long videos into chunks that fit a recognition API's limits, predict every chunk, "
        "and merge the answers into one timeline."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--log-format", choices=["text", "json"],
                        default=_env("log_format", "text"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("probe", help="what a video holds, and whether it fits each mode")
    p.add_argument("video")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plan", help="how a video would be cut, without cutting it")
    p.add_argument("video")
    _limit_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("split", help="cut a video into chunk files and DIR/chunks.json")
    p.add_argument("video")
    p.add_argument("--out", required=True)
    _limit_args(p)

    p = sub.add_parser("run", help="the main job: probe, split, predict, merge")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders, manifests (.txt, .csv, .jsonl), http(s) URLs")
    p.add_argument("--out", required=True)
    _limit_args(p)
    p.add_argument("--backend", choices=["local", "clarifai"], default=_env("backend", "local"))
    p.add_argument("--model", default=_env("model", "nsfw"),
                   help="alias (general nsfw food travel wedding apparel) or a model id")
    p.add_argument("--sample-ms", type=int, default=int(_env("sample_ms", 1000)))
    p.add_argument("--concurrency", type=int, default=_env("concurrency"))
    p.add_argument("--rate-limit", type=float, default=float(_env("rate_limit", 10.0)))
    p.add_argument("--api-base", default=_env("api_base"), help="HOST:PORT of the API")
    p.add_argument("--insecure", action="store_true", default=bool(_env("insecure")))
    p.add_argument("--force", action="store_true", default=bool(_env("force")))
    p.add_argument("--no-progress", action="store_true", default=bool(_env("no_progress")))
    p.add_argument("--dask", default=_env("dask"), metavar="ADDRESS|local[:N]",
                   help="run each video as a task on a Dask cluster (tcp://host:8786), or on a "
                        "local one with N worker processes; --out must be shared storage")
    p.add_argument("--lock-wait", type=float, default=float(_env("lock_wait", 0)),
                   metavar="SECONDS", help="wait this long for a video another run is working "
                                           "on (default 0: skip it and say so)")

    from pipeline import serve_cli
    serve_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    _setup_logging(args.verbose, args.log_format)
    try:
        return int(COMMANDS[args.command](args))
    except ConfigError as exc:
        print(f"video-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AuthError as exc:
        print(f"video-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"video-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (Interrupted, KeyboardInterrupt):
        print("video-pipeline: interrupted; finished work is saved, rerun to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except PipelineError as exc:
        print(f"video-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


def _setup_logging(verbose: int, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from pipeline.settings import Settings
    return Settings(mode=args.mode, max_bytes=_int(args.max_bytes, "--max-bytes"),
                    max_seconds=_float(args.max_seconds, "--max-seconds"),
                    keep_audio=args.keep_audio, **extra)


def _int(value: Any, flag: str) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError as exc:
        raise ConfigError(f"{flag} takes a whole number, not {value!r}") from exc


def _float(value: Any, flag: str) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError as exc:
        raise ConfigError(f"{flag} takes a number, not {value!r}") from exc


def cmd_probe(args: argparse.Namespace) -> int:
    from pipeline import report
    from pipeline.probe import probe
    info = probe(args.video)
    print(json.dumps(report.probe_dict(info), indent=2) if args.json else report.probe_text(info))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from pipeline import report, segment
    from pipeline.probe import probe
    settings = _settings(args)
    info = probe(args.video, keep_audio=settings.keep_audio)
    plan = segment.make_plan(info, settings.limits,
                             segment.SegmentOptions(keep_audio=settings.keep_audio))
    print(json.dumps(report.plan_dict(info, plan), indent=2) if args.json
          else report.plan_text(info, plan))
    return EXIT_OK


def cmd_split(args: argparse.Namespace) -> int:
    from pipeline import outputs, segment, store
    from pipeline.probe import probe
    settings = _settings(args)
    info = probe(args.video, keep_audio=settings.keep_audio)
    chunks = segment.split(info, settings.limits, args.out,
                           segment.SegmentOptions(keep_audio=settings.keep_audio))
    store.atomic_write_json(os.path.join(args.out, "chunks.json"), {
        "source": info.path, "limits": settings.limits.as_dict(),
        "chunks": [outputs.chunk_dict(c) for c in chunks]})
    for c in chunks:
        print(f"{c.path}\t{c.start_ms}\t{c.end_ms}\t{c.size_bytes}")
    print(f"{len(chunks)} chunks; list in {os.path.join(args.out, 'chunks.json')}",
          file=sys.stderr)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.stopping import StopFlag, stop_on_signals
    settings = _settings(
        args, backend=args.backend, model=args.model, sample_ms=args.sample_ms,
        concurrency=_int(args.concurrency, "--concurrency"), rate_limit=args.rate_limit,
        api_base=args.api_base, insecure=args.insecure, force=args.force,
        progress=not args.no_progress, dask=args.dask, lock_wait=args.lock_wait)
    with stop_on_signals(StopFlag()) as stop:
        if settings.dask:
            from pipeline import dask_engine
            outcomes = dask_engine.run(settings, args.out, args.inputs, stop=stop)
        else:
            outcomes = _run_here(settings, args.out, args.inputs, stop)
    failed = [o for o in outcomes if o.status == "failed"]
    done = len(outcomes) - len(failed)
    print(f"{done} of {len(outcomes)} inputs done; results in {args.out}/ "
          f"(summary.json, <VIDEO_ID>/timeline.json)")
    return EXIT_FAILED if failed else EXIT_OK


def _run_here(settings: Any, out: str, inputs: list[str], stop: Any) -> list[Any]:
    from pipeline.progress import Progress
    from pipeline.runner import Runner
    with Progress(enabled=settings.progress) as progress:
        return Runner(settings, out, progress=progress, stop=stop).run(inputs)


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline import serve_cli
    return serve_cli.run(args)


COMMANDS = {"probe": cmd_probe, "plan": cmd_plan, "split": cmd_split, "run": cmd_run,
            "serve": cmd_serve}
