"""`serve` alone: requests per second and median latency for one 10 s chunk of 720p.

`video-pipeline serve` runs as its own process (no key, no latency added); a clarifai-grpc
client sends the same chunk (720p30 H.264, ~3 Mbit/s, as bytes) REQUESTS times at each
concurrency, after one warm-up request (the model's first load). One frame a second is sampled,
so every request decodes and scores 10 frames.

    .venv/bin/python bench/bench_serve.py [--requests 16] [--concurrency 1 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, sh, start_serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def ten_seconds_720p() -> Path:
    """10 s of 720p30 H.264 at ~3 Mbit/s, noisy enough to need it, a keyframe every 2 s."""
    OUT.mkdir(exist_ok=True)
    path = OUT / "ten-720p.mp4"
    if not path.exists():
        sh("ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
           "testsrc2=size=1280x720:rate=30,noise=alls=14:allf=t", "-t", "10",
           "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3000k", "-maxrate", "3500k",
           "-bufsize", "6000k", "-g", "60", "-pix_fmt", "yuv420p", str(path))
    return path


def one_request(stub: service_pb2_grpc.V2Stub, video: bytes) -> float:
    request = service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[resources_pb2.Input(
        data=resources_pb2.Data(video=resources_pb2.Video(base64=video)))])
    began = time.perf_counter()
    response = stub.PostModelOutputs(request, metadata=(("authorization", "Key any"),),
                                     timeout=300)
    took = time.perf_counter() - began
    assert response.status.code == 10000, response.status.description
    assert len(response.outputs[0].data.frames) == 10
    return took


def measure(stub: service_pb2_grpc.V2Stub, video: bytes, requests: int, concurrency: int,
            ) -> tuple[float, float]:
    """(requests per second, median latency in s) for `requests` sent `concurrency` at a time."""
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda _: one_request(stub, video), range(requests)))
    return requests / (time.perf_counter() - began), statistics.median(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    chunk = ten_seconds_720p()
    video = chunk.read_bytes()
    proc, port = start_serve()
    try:
        channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
        stub = service_pb2_grpc.V2Stub(channel)
        one_request(stub, video)  # warm-up: the model's first load
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{args.requests} requests of {chunk.name} ({len(video):,} bytes, 10 s, 1280x720); "
              f"load average {load} on {os.cpu_count()} cores")
        print(f"{'concurrency':>11} {'requests/s':>10} {'median latency s':>16}")
        for c in args.concurrency:
            rate, median = measure(stub, video, args.requests, c)
            print(f"{c:>11} {rate:>10.2f} {median:>16.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
