"""`video-pipeline serve`: the command-line side of the Clarifai-compatible server."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the embedded model over Clarifai's gRPC protocol")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import ConfigError
    raise ConfigError("serve is not built yet")
