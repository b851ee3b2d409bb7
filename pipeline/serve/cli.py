"""`video-pipeline serve`: the command-line side of the Clarifai-compatible server."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pipeline.errors import ConfigError

GRACE = 4.0  # seconds requests in flight have after SIGTERM: with the checks, exit within ~6 s


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", parents=parents,
                       help="serve the embedded model over Clarifai's gRPC protocol")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="require 'authorization: Key KEY' "
                   "(default: $VIDEO_PIPELINE_API_KEY; none: no key needed)")
    p.add_argument("--max-bytes", type=int, default=10_000_000, help="bytes inputs (10 MB)")
    p.add_argument("--max-url-bytes", type=int, default=80_000_000, help="URL inputs (80 MB)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="video length (600 s)")
    p.add_argument("--fault-rate", type=float, default=0.0,
                   help="probability that a request fails with a transient code")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--fault-codes", default=None, help="comma-separated faults to draw from, "
                   "e.g. UNAVAILABLE,11005,output:21354 (default: every retryable code)")
    p.add_argument("--fault-at", default=None, metavar="N,N,...",
                   help="fail exactly these requests (1 = the first to arrive) with the first "
                        "of --fault-codes, e.g. a permanent output:31101")
    p.add_argument("--latency-ms", type=int, default=0,
                   help="least time an answer takes (our own work counts toward it)")
    p.add_argument("--request-log", default=None, help="append one JSON line per request")
    p.add_argument("--allow-local-urls", action="store_true",
                   help="fetch URLs on loopback and private addresses (refused by default)")
    p.add_argument("--workers", type=int, default=8, help="requests served at once (URL "
                   "downloads take at most half of them)")
    p.add_argument("--max-image-pixels", type=int, default=85_000_000,
                   help="pixels an image input may have, read from its header before it is "
                        "decoded (85000000: Clarifai's 85 megapixels)")
    p.add_argument("--max-request-bytes", type=int, default=128_000_000,
                   help="bytes a request may have; gRPC refuses a larger one before it is "
                        "decoded (128000000: Clarifai's newer byte limit)")
    p.add_argument("--url-timeout", type=float, default=30.0,
                   help="seconds a URL download may take in all (30)")
    p.add_argument("--key-rate-limit", type=int, default=None, metavar="R",
                   help="accept at most R requests per key in any 1-second window, counted "
                        "on arrival; beyond that answer CONN_THROTTLED (11005), as Clarifai "
                        "does (default: no limit)")


def config(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    from pipeline.serve.inputs import InputLimits
    from pipeline.serve.server import ServeConfig
    if not 0 <= args.fault_rate <= 1:
        raise ConfigError(f"--fault-rate must be between 0 and 1, not {args.fault_rate}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {args.port}")
    if args.workers < 1 or args.latency_ms < 0:
        raise ConfigError("--workers must be at least 1 and --latency-ms at least 0")
    _check_limits(args)
    return ServeConfig(
        host=args.host, port=args.port,
        api_key=args.api_key or environ.get("VIDEO_PIPELINE_API_KEY") or None,
        limits=InputLimits(max_bytes=args.max_bytes, max_url_bytes=args.max_url_bytes,
                           max_seconds=args.max_seconds, allow_local_urls=args.allow_local_urls,
                           url_timeout=args.url_timeout, max_image_pixels=args.max_image_pixels),
        fault_rate=args.fault_rate, fault_seed=args.fault_seed, faults=_faults(args.fault_codes),
        fault_at=_numbers(args.fault_at),
        latency_ms=args.latency_ms,
        request_log=args.request_log, workers=args.workers,
        max_request_bytes=args.max_request_bytes, key_rate_limit=args.key_rate_limit)


def _check_limits(args: argparse.Namespace) -> None:
    from pipeline.serve.images import PILLOW_LIMIT
    if not 1 <= args.max_image_pixels <= PILLOW_LIMIT:
        raise ConfigError(f"--max-image-pixels must be 1..{PILLOW_LIMIT} (Pillow refuses larger "
                          f"images as decompression bombs), not {args.max_image_pixels}")
    if not 1 <= args.max_request_bytes < 2**31:
        raise ConfigError("--max-request-bytes must be 1..2147483647 (gRPC's largest "
                          f"message), not {args.max_request_bytes}")
    if not args.url_timeout > 0:
        raise ConfigError(f"--url-timeout must be more than 0, not {args.url_timeout}")
    if args.key_rate_limit is not None and args.key_rate_limit < 1:
        raise ConfigError(f"--key-rate-limit must be at least 1, not {args.key_rate_limit}")


def _faults(text: str | None) -> Any:
    from pipeline.serve.faults import FAULTS, Fault
    if not text:
        return FAULTS
    try:
        return tuple(Fault.parse(t) for t in text.split(",") if t.strip())
    except KeyError as exc:
        raise ConfigError(f"--fault-codes: unknown gRPC status {exc}") from exc


def _numbers(text: str | None) -> frozenset[int]:
    try:
        return frozenset(int(n) for n in (text or "").split(",") if n.strip())
    except ValueError:
        raise ConfigError(f"--fault-at takes request numbers like 3,7, not {text!r}") from None


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Serve until SIGTERM or Ctrl-C; requests in flight have a few seconds to finish, then
    the process ends, whatever they are doing."""
    from pipeline.serve import memory
    from pipeline.serve.server import Server
    server = Server(config(args, environ))
    memory.map_large_allocations()
    try:
        port = server.start()
    except OSError as exc:
        raise ConfigError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"serving on {args.host}:{port}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    finished = server.stop(GRACE)
    print("stopped", file=sys.stderr, flush=True)
    if not finished:
        # A request stuck where no check reaches would keep the interpreter waiting for its
        # thread at exit; the log is closed and stderr flushed, so nothing is lost.
        os._exit(0)
    return 0

