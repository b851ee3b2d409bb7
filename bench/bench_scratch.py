"""Scratch disk of a run: the peak bytes under --out while `video-pipeline run` sends the
30-minute 720p video to `serve` (the clarifai backend over real gRPC), polled every 50 ms.

`--python PATH` runs another checkout's interpreter (e.g. the code before chunks were built in
memory) against the same server, for a before/after figure."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, thirty_minute_720p  # noqa: E402

from pipeline.serve.server import ServeConfig, Server  # noqa: E402

KEY = "bench-scratch-key"


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(folder, name))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--sample-ms", default="10000")
    args = parser.parse_args()
    src = thirty_minute_720p()
    out = OUT / "scratch-run"
    shutil.rmtree(out, ignore_errors=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_bytes(out))
            time.sleep(0.05)

    with Server(ServeConfig(port=0, api_key=KEY, workers=4)) as server:
        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        began = time.monotonic()
        run = subprocess.run(
            [args.python, "-m", "pipeline", "run", str(src), "--out", str(out), "--backend",
             "clarifai", "--insecure", "--api-base", f"127.0.0.1:{server.port}",
             "--sample-ms", args.sample_ms, "--no-progress"],
            env={**os.environ, "CLARIFAI_PAT": KEY}, capture_output=True, text=True,
            cwd=Path(args.python).absolute().parents[2])  # that checkout's own `pipeline`
        done.set()
        watcher.join()
    assert run.returncode == 0, run.stderr
    print(f"{args.python}: run took {time.monotonic() - began:.1f} s; peak bytes under --out "
          f"{peak:,} (source {src.stat().st_size:,}); left after: {tree_bytes(out):,}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
