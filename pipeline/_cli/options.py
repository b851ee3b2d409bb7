"""The run options: one table gives each its flag, its environment variable, its parser, its
default and its help. Values are resolved once, after parsing: the flag if given, else
VIDEO_PIPELINE_<NAME> if set, else the default. A value that does not parse, from either place,
is a ConfigError that names where it came from (exit 2)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.media import proc
from pipeline.output.exports import parse_exports
from pipeline.send import strategies
from pipeline.send.strategy import Strategy
from pipeline.settings import Settings
from pipeline.types import BACKENDS, MODES

ENV_PREFIX = "VIDEO_PIPELINE_"
YES = frozenset({"1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})


def yes_no(text: str, where: str) -> bool:
    """1/true/yes/on or 0/false/no/off, in any case; anything else is an error, never 'yes'."""
    value = text.strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise ConfigError(f"{where} takes yes or no (1/true/yes/on or 0/false/no/off), not {text!r}")


def whole_number(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"{where} takes a whole number, not {text!r}") from None


def number(text: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{where} takes a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where} takes a finite number, not {text!r}")
    return value


def text(value: str, where: str) -> str:
    return value


def auto_or_number(value: str, where: str) -> float | str:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return number(value, where)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(" takes a ", " takes auto or a ", 1)) from None


def exports(value: str, where: str) -> tuple[str, ...]:
    try:
        return parse_exports(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(value: str, where: str) -> str:
        if value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}, not {value!r}")
        return value
    return parse


@dataclass(frozen=True)
class Option:
    # Any: one table holds options of every type (numbers, text, yes/no, lists); Settings'
    # parts check what they are given.
    flag: str
    parse: Callable[[str, str], Any]
    default: Any
    help: str
    metavar: str | None = None
    switch: bool = False  # a yes/no flag: given means yes; its variable reads yes/no

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        help_text = f"{self.help} (env {self.env})"
        if self.switch:
            parser.add_argument(self.flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(self.flag, default=None, metavar=self.metavar, help=help_text)

    def resolve(self, args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
        given = getattr(args, self.dest, None)
        if given is not None:
            return True if self.switch else self.parse(given, self.flag)
        if self.env in environ:
            return yes_no(environ[self.env], self.env) if self.switch else self.parse(
                environ[self.env], self.env)
        return self.default


LOG_FORMAT = Option("--log-format", one_of("text", "json"), "text",
                    "log lines as text, or one JSON object each on stderr (default text)",
                    metavar="text|json")

LIMITS = (
    Option("--mode", one_of(*MODES), "bytes",
           "bytes: chunks sent in the request (10 MB); url: chunks staged (--stage) and sent "
           "as presigned URLs (80 MB); both 600 s (default bytes)", metavar="|".join(MODES)),
    Option("--max-bytes", whole_number, None,
           "largest chunk in bytes (default: the mode's limit)", metavar="N"),
    Option("--max-seconds", number, None, "longest chunk in seconds (default 600)",
           metavar="S"),
)


def _setting_option(field: dataclasses.Field[Any]) -> Option:
    """A strategy's setting as an option: its flag, help and range come with the field."""
    meta = field.metadata
    switch = field.default is False
    parse = yes_no if switch else number if isinstance(field.default, float) else whole_number
    return Option(meta["flag"], parse, field.default, meta["help"], metavar=meta["metavar"],
                  switch=switch)


def strategy_options(*chosen: type[Strategy]) -> tuple[Option, ...]:
    """The options of the strategies' own settings (each flag once), from the registry."""
    found: dict[str, Option] = {}
    for cls in chosen or tuple(strategies.STRATEGIES.values()):
        for field in cls.settings():
            found.setdefault(field.metadata["flag"], _setting_option(field))
    return tuple(found.values())


_NAMES = tuple(strategies.STRATEGIES)
# What the requests carry, and how often frames are sampled: for `run` and `plan`.
STRATEGY = (
    Option("--sample-ms", whole_number, 1000,
           "one frame scored per interval of this many ms, 100-60000 (default 1000)",
           metavar="MS"),
    Option("--strategy", one_of(*_NAMES), strategies.DEFAULT,
           "what requests carry: " + ", ".join(f"{cls.name} ({cls.summary})" for cls in
                                               strategies.STRATEGIES.values())
           + f" (default {strategies.DEFAULT})", metavar="|".join(_NAMES)),
    *strategy_options(),
)
# `split` cuts as the copy strategy does, with its settings.
SPLIT = strategy_options(strategies.STRATEGIES[strategies.DEFAULT])

# How segments are made: for `run` (segments.json and its exports) and `report`.
SEGMENTS = (
    Option("--min-confidence", number, 0.5, "a concept is present in a frame whose value is at "
           "least this, 0-1 (default 0.5)", metavar="V"),
    Option("--max-gap-ms", whole_number, None, "bridge gaps up to this long inside a segment "
           "(default: one sample, --sample-ms)", metavar="MS"),
    Option("--min-segment-ms", whole_number, 0,
           "drop segments shorter than this (default 0: keep all)", metavar="MS"),
)

# What a run writes besides timeline.json and segments.json.
OUTPUTS = (
    Option("--export", exports, ("csv", "jsonl", "vtt"), "which exports to write: csv "
           "(frames.csv, segments.csv), jsonl (frames.jsonl), vtt (segments.vtt), srt "
           "(segments.srt), otio (timeline.otio, OpenTimelineIO: the source as a clip, a marker "
           "per segment), comma separated, or none (default csv,jsonl,vtt)", metavar="LIST"),
    Option("--report", yes_no, False, "also write each video's report.html "
           "(default: off; `video-pipeline report` writes it later)", switch=True),
)

RUN = (
    Option("--backend", one_of(*BACKENDS), "local",
           "local: the embedded model, no key, no network; clarifai: Clarifai's API "
           "(key from CLARIFAI_PAT); never switched silently (default local)",
           metavar="local|clarifai"),
    Option("--model", text, "nsfw", "alias (general nsfw food travel wedding apparel) or a "
           "model id; the local backend has nsfw (default nsfw)", metavar="NAME|ID"),
    Option("--concurrency", whole_number, None,
           "chunks in flight: requests (clarifai, default 4) or decoders (local, default 2)",
           metavar="N"),
    Option("--rate-limit", auto_or_number, "auto",
           "request starts per second, retries included: auto learns the account's limit from "
           "the API's answers (throttles cut it, successes raise it) and remembers it per key; "
           "a number R is a fixed limit over any 1-second window (default auto; Clarifai "
           "allows 15)", metavar="auto|R"),
    Option("--api-base", text, None, "HOST:PORT of another Clarifai-compatible server "
           "(default api.clarifai.com, TLS)", metavar="HOST:PORT"),
    Option("--insecure", yes_no, False,
           "plain-text gRPC to --api-base, for a local server such as `serve` "
           "(default: TLS)", switch=True),
    Option("--force", yes_no, False,
           "redo videos and chunks already done (default: a rerun skips them)", switch=True),
    Option("--no-progress", yes_no, False,
           "no progress bar (default: shown when stderr is a terminal)", switch=True),
    Option("--dask", text, None, "run each video as a task on a Dask cluster (tcp://HOST:8786), "
           "or on a local one of N worker processes; --out must be shared storage "
           "(default: off)", metavar="ADDRESS|local[:N]"),
    Option("--stage", text, None, "URL mode: where chunks are uploaded for the API to fetch "
           "by presigned URL, s3://BUCKET/PREFIX (endpoint and credentials: the standard AWS "
           "settings; default: none, so only URL sources that fit as they are can be sent)",
           metavar="s3://BUCKET/PREFIX"),
    Option("--s3-endpoint-url", text, None, "S3-compatible endpoint for --stage and s3:// "
           "inputs, e.g. http://127.0.0.1:9000 for MinIO (default: AWS_ENDPOINT_URL, else "
           "AWS S3)", metavar="URL"),
    Option("--keep-staged", yes_no, False, "keep staged chunks in the bucket (default: each "
           "is deleted once its result is saved)", switch=True),
    Option("--lock-wait", number, 0.0, "seconds to wait for a video another run is working on "
           "(default 0: skip it and say so)", metavar="SECONDS"),
    Option("--settle-seconds", number, 5.0, "a file modified more recently than this is "
           "watched until it has been unchanged that long, and deferred to a later run if it "
           "changes (still being written); files whose container says they are whole (MP4 "
           "with its index, Matroska of known size, AVI) are taken at once (default 5)",
           metavar="S"),
    Option("--max-billed-frames", whole_number, None, "the frames this run may bill (Clarifai "
           "bills each frame it scores): a request that would go past it is not sent, and the "
           "run stops there (exit 3); a rerun with a larger budget finishes it without billing "
           "again what was done (default: no cap)", metavar="N"),
    Option("--notify", text, None, "POST a signed JSON body to URL when each video ends "
           "(done, failed, deferred, stopped) and when the batch ends; retried for a bounded "
           "time, never failing the run (secret: VIDEO_PIPELINE_NOTIFY_SECRET; default: none)",
           metavar="URL"),
    Option("--metrics-file", text, None, "write the run's figures to PATH in the Prometheus "
           "text format, atomically, for node_exporter's textfile collector (default: none)",
           metavar="PATH"),
    Option("--rate-limit-max", number, None, "the most requests per second --rate-limit auto "
           "may reach (default: no cap but what the API allows)", metavar="R"),
)


def add_all(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    for option in options:
        option.add_to(parser)


def resolve(args: argparse.Namespace, options: Sequence[Option],
            environ: Mapping[str, str]) -> dict[str, Any]:
    return {o.dest: o.resolve(args, environ) for o in options}

# Settings only the environment gives (no flag): how URL inputs are downloaded, and how long
# ffprobe and ffmpeg may take (DEADLINES, read for every command).
DEADLINES = (
    Option("--probe-timeout", number, 60.0,
           "seconds ffprobe may take to read a file's header; also the fixed part of every "
           "ffmpeg deadline"),
    Option("--ffmpeg-stall-timeout", number, 120.0,
           "seconds a streamed decode's output may stand still before it is killed"),
    Option("--ffmpeg-time-factor", number, 10.0,
           "seconds an ffmpeg/ffprobe pass may take for each second of media it covers"),
)
ENV_ONLY = (
    Option("--download-max-bytes", whole_number, 20_000_000_000,
           "largest URL input downloaded, bytes"),
    Option("--download-timeout", number, 30.0, "seconds a URL download may stall"),
    Option("--download-min-rate", number, 50_000.0,
           "bytes a second a URL download must average, after its stall allowance"),
    *DEADLINES,
    Option("--notify-secret", text, None,
           "the key --notify's bodies are signed with (HMAC-SHA256); required with --notify"),
    Option("--cache-dir", text, None, "folder where the rate learned for each key is "
           "remembered, under a salted digest, never the key (default "
           "$XDG_CACHE_HOME/video-pipeline, else ~/.cache/video-pipeline)"),
)


def configure_processes(environ: Mapping[str, str]) -> None:
    """Hold every ffprobe/ffmpeg of this command to the deadlines the environment sets (or the
    defaults), checked like a run's settings; `run` sets them again from its Settings."""
    args = argparse.Namespace()
    proc.configure(Settings.from_options(**resolve(args, DEADLINES, environ)).deadlines)


def settings(args: argparse.Namespace, environ: Mapping[str, str], *, run: bool,
             strategy: bool = False, split: bool = False) -> Settings:
    """The Settings of one command: its flags, then the environment, then the defaults; the
    environment is read here and nowhere else (credentials included)."""
    values = resolve(args, LIMITS, environ)
    if run or strategy:
        values |= resolve(args, STRATEGY, environ)
    if split:
        values |= resolve(args, SPLIT, environ)
    if run:
        values |= resolve(args, (*RUN, *SEGMENTS, *OUTPUTS, *ENV_ONLY), environ)
        values["progress"] = not values.pop("no_progress")
        values["cache_dir"] = values["cache_dir"] or default_cache_dir(environ)
        values |= {"api_key": environ.get("CLARIFAI_PAT", "").strip() or None,
                   "user_id": environ.get("CLARIFAI_USER_ID") or "clarifai",
                   "app_id": environ.get("CLARIFAI_APP_ID") or "main"}
    return Settings.from_options(**values)


def default_cache_dir(environ: Mapping[str, str]) -> str | None:
    """$XDG_CACHE_HOME/video-pipeline, else ~/.cache/video-pipeline (None without a home)."""
    base = environ.get("XDG_CACHE_HOME", "").strip()
    if not base:
        home = environ.get("HOME", "").strip()
        if not home:
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "video-pipeline")


def strategy_values(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Every strategy's settings as the options give them (for `plan`'s cost table)."""
    return resolve(args, STRATEGY, environ)


def segment_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings carrying only the segment rules (for `report`), validated like a run's."""
    return Settings.from_options(**resolve(args, SEGMENTS, environ))


# -- serve ------------------------------------------------------------------------------------
# serve's variables are VIDEO_PIPELINE_SERVE_<NAME>: serve's --max-bytes is the limit it holds
# clients to, not the size a run cuts its chunks to (VIDEO_PIPELINE_MAX_BYTES), and one shell
# often starts both.

@dataclass(frozen=True)
class ServeOption(Option):
    variable: str = ""  # its environment variable, when not VIDEO_PIPELINE_SERVE_<NAME>

    @property
    def env(self) -> str:
        return self.variable or f"{ENV_PREFIX}SERVE_{self.dest.upper()}"


@dataclass(frozen=True)
class KeyOption(ServeOption):
    """The key clients must send. An empty flag (a script's `--api-key "$KEY"` with KEY unset)
    counts as not given, so the variable's key still guards the server."""

    def resolve(self, args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
        return getattr(args, self.dest, None) or environ.get(self.env) or None


def checked(parse: Callable[[str, str], Any], ok: Callable[[Any], bool],
            rule: str) -> Callable[[str, str], Any]:
    """`parse`, then a value that breaks `rule` is an error naming where it came from."""
    def parse_checked(value: str, where: str) -> Any:
        got = parse(value, where)
        if not ok(got):
            raise ConfigError(f"{where} must be {rule}, not {got}")
        return got
    return parse_checked


def image_pixels(value: str, where: str) -> int:
    from pipeline.serve.images import PILLOW_LIMIT
    pixels: int = checked(whole_number, lambda n: 1 <= n <= PILLOW_LIMIT, f"1..{PILLOW_LIMIT} "
                          "(Pillow refuses larger images as decompression bombs)")(value, where)
    return pixels


def fault_codes(value: str, where: str) -> Any:
    """`UNAVAILABLE,11005,output:21354` as serve's Faults; none named: None (every code)."""
    from pipeline.serve.faults import Fault
    try:
        return tuple(Fault.parse(t) for t in value.split(",") if t.strip()) or None
    except KeyError as exc:
        raise ConfigError(f"{where}: unknown gRPC status {exc}") from None


def request_numbers(value: str, where: str) -> frozenset[int]:
    try:
        return frozenset(int(n) for n in value.split(",") if n.strip())
    except ValueError:
        raise ConfigError(f"{where} takes request numbers like 3,7, not {value!r}") from None


SERVE = (
    ServeOption("--host", text, "127.0.0.1", "address to bind (default 127.0.0.1)"),
    ServeOption("--port", checked(whole_number, lambda n: 0 <= n <= 65535, "between 0 and 65535"),
                50051, "0 picks a free port (default 50051)"),
    KeyOption("--api-key", text, None, "require 'authorization: Key KEY' (default: none, no key "
              "needed)", variable=f"{ENV_PREFIX}API_KEY"),
    ServeOption("--max-bytes", whole_number, 10_000_000, "bytes inputs (10 MB)"),
    ServeOption("--max-url-bytes", whole_number, 80_000_000, "URL inputs (80 MB)"),
    ServeOption("--max-seconds", number, 600.0, "video length (600 s)"),
    ServeOption("--fault-rate", checked(number, lambda p: 0 <= p <= 1, "between 0 and 1"), 0.0,
                "probability that a request fails with a transient code (default 0)"),
    ServeOption("--fault-seed", whole_number, 0, "seed of the faults drawn (default 0)"),
    ServeOption("--fault-codes", fault_codes, None, "comma-separated faults to draw from, "
                "e.g. UNAVAILABLE,11005,output:21354 (default: every retryable code)"),
    ServeOption("--fault-at", request_numbers, frozenset(), "fail exactly these requests (1 = "
                "the first to arrive) with the first of --fault-codes, e.g. a permanent "
                "output:31101", metavar="N,N,..."),
    ServeOption("--latency-ms", checked(whole_number, lambda n: n >= 0, "at least 0"), 0,
                "least time an answer takes (our own work counts toward it)"),
    ServeOption("--request-log", text, None, "append one JSON line per request"),
    ServeOption("--allow-local-urls", yes_no, False,
                "fetch URLs on loopback and private addresses (refused by default)",
                switch=True),
    ServeOption("--workers", checked(whole_number, lambda n: n >= 1, "at least 1"), 8,
                "requests served at once (URL downloads take at most half of them) (default 8)"),
    ServeOption("--max-image-pixels", image_pixels, 85_000_000,
                "pixels an image input may have, read from its header before it is decoded "
                "(85000000: Clarifai's 85 megapixels)"),
    ServeOption("--max-request-bytes", checked(
        whole_number, lambda n: 1 <= n < 2**31, "1..2147483647 (gRPC's largest message)"),
        128_000_000, "bytes a request may have; gRPC refuses a larger one before it is decoded "
        "(128000000: Clarifai's newer byte limit)"),
    ServeOption("--url-timeout", checked(number, lambda s: s > 0, "more than 0"), 30.0,
                "seconds a URL download may take in all (30)"),
    ServeOption("--key-rate-limit", checked(whole_number, lambda n: n >= 1, "at least 1"), None,
                "accept at most R requests per key in any 1-second window, counted on arrival; "
                "beyond that answer CONN_THROTTLED (11005), as Clarifai does (default: no limit)",
                metavar="R"),
)
# The serve options that are serve.inputs.InputLimits fields.
SERVE_LIMITS = ("max_bytes", "max_url_bytes", "max_seconds", "url_timeout", "allow_local_urls",
                "max_image_pixels")
