"""The command line: parse, read the environment once into settings, call the library, and turn
every error into one line and an exit code (`ExitCode`, the one map of them). No traceback
reaches the user (-vv logs one)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from pipeline import redact
from pipeline._cli import commands, options
from pipeline._cli.exits import ExitCode
from pipeline.errors import AuthError, ConfigError, InputError, Interrupted, PipelineError
from pipeline.version import __version__

log = logging.getLogger("pipeline")
_ExcInfo = (tuple[type[BaseException], BaseException, TracebackType | None]
            | tuple[None, None, None])


def _common() -> argparse.ArgumentParser:
    """-v and --log-format, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log lines (-v info, -vv debug with tracebacks)")
    common.add_argument("--log-format", default=argparse.SUPPRESS, metavar="text|json",
                        help=f"{options.LOG_FORMAT.help} (env {options.LOG_FORMAT.env})")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="video-pipeline", parents=[common], description=(
        "Cut long videos into chunks that fit a recognition API's limits, predict every chunk, "
        "and merge the answers into one timeline."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _media_commands(sub, common)
    _run_command(sub, common)
    _report_command(sub, common)
    _serve_command(sub, common)
    return parser


def _media_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """probe, plan and split: one video, nothing sent."""
    p = sub.add_parser("probe", parents=[common],
                       help="what a video holds, and whether it fits each mode")
    p.add_argument("video")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("plan", parents=[common], help=(
        "how a video would be cut, without cutting, and what each strategy would cost"))
    p.add_argument("video")
    options.add_all(p, options.LIMITS)
    options.add_all(p, options.STRATEGY)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("split", parents=[common],
                       help="cut a video into chunk files and DIR/chunks.json")
    p.add_argument("video")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the chunk files")
    options.add_all(p, options.LIMITS)
    options.add_all(p, options.SPLIT)


def _run_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="the main job: probe, split, predict, merge")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders, manifests (.txt, .csv, .jsonl), http(s) URLs, "
                        "s3://BUCKET/KEY objects")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="results folder: DIR/summary.json and DIR/VIDEO_ID/timeline.json; "
                        "never read as an input")
    options.add_all(p, options.LIMITS)
    options.add_all(p, options.STRATEGY)
    options.add_all(p, options.RUN)
    options.add_all(p, options.SEGMENTS)
    options.add_all(p, options.OUTPUTS)


def _report_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help=(
        "a self-contained HTML page of one video's results (DIR/VIDEO_ID), or of the whole "
        "batch (DIR)"))
    p.add_argument("path", metavar="DIR[/VIDEO_ID]",
                   help="a video's results folder (with timeline.json), or a run's --out")
    p.add_argument("--html", metavar="FILE",
                   help="where the page goes (default: report.html in the folder)")
    p.add_argument("--png", metavar="FILE",
                   help="also write the chart alone as a PNG (a video only; with --png and "
                        "no --html, only the chart)")
    options.add_all(p, options.SEGMENTS)


def _serve_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common],
                       help="serve the embedded model over Clarifai's gRPC protocol")
    options.add_all(p, options.SERVE)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return ExitCode.USAGE if exc.code not in (0, None) else ExitCode.OK
    verbose = getattr(args, "verbose", 0)
    try:
        fmt = options.LOG_FORMAT.resolve(args, environ)
        _setup_logging(verbose, fmt)
        options.configure_processes(environ)
        return int(commands.COMMANDS[args.command](args, environ, fmt))
    except BrokenPipeError:
        _silence_stdout()  # the reader left (`| head`): what it read is what it wanted
        return ExitCode.OK
    except (ConfigError, AuthError) as exc:
        return _fail(exc, ExitCode.USAGE)
    except (Interrupted, KeyboardInterrupt):
        return _fail("interrupted; finished work is saved, rerun to resume", ExitCode.INTERRUPTED)
    except (InputError, PipelineError) as exc:
        return _fail(exc, ExitCode.FAILED)
    except Exception as exc:  # noqa: BLE001 (the last resort: a bug is one line, -vv its traceback)
        log.debug("internal error", exc_info=exc)
        return _fail(f"internal error: {type(exc).__name__}: {exc} (run with -vv for the "
                     "traceback)", ExitCode.FAILED)


def _fail(problem: object, code: int) -> int:
    if isinstance(problem, BaseException):
        log.debug("%s", type(problem).__name__, exc_info=problem)  # -vv: it and its causes
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(f"video-pipeline: error: {one_line(str(problem))}", file=sys.stderr)
    return code


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (a newline as \\n, a terminal
    escape as \\x1b): a file name may hold them, and in a text log they would forge lines or
    rewrite the terminal. JSON logs escape them already."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class _TextFormatter(logging.Formatter):
    """LEVEL message, the message on one line (`one_line`); a traceback (-vv) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return one_line(super().formatMessage(record))

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 (logging's name)
        return redact.text(super().formatException(ei))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = redact.text(self.formatException(record.exc_info))
        return json.dumps(entry)


def _setup_logging(verbose: int, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json"
                         else _TextFormatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
