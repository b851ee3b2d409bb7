"""`serve` as Clarifai's Node.js client sees it (clarifai-nodejs-grpc from tests/node, which
`make install` installs with npm), on real gRPC over 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.serve.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.node]

KEY = "node-test-key"
NODE = Path(__file__).resolve().parent / "node"


def node_predict(server: Server, key: str, video: Path, sample_ms: int,
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", "predict.js", str(server.port), key, str(video),
                           str(sample_ms)], cwd=NODE, capture_output=True, text=True, timeout=60)


def test_the_node_client_predicts_a_video_and_hears_of_a_wrong_key(
        serve: Callable[..., Server], small_video: Path) -> None:
    """A frame every sample_ms with both concepts; a wrong key ends with serve's key message."""
    server = serve()
    done = node_predict(server, KEY, small_video, 2000)
    assert done.returncode == 0, done.stderr
    frames = [line.split() for line in done.stdout.splitlines()]
    assert [f[0] for f in frames] == ["1000", "3000", "5000", "7000"]
    assert all(sorted(c.split("=")[0] for c in f[1:]) == ["nsfw", "sfw"] for f in frames)
    refused = node_predict(server, "not-the-key", small_video, 2000)
    assert refused.returncode == 1 and "Invalid API key" in refused.stderr
