"""Peak memory of `python -m pipeline serve` under each hostile request, measured from /proc:
`python tests/serve_memory.py [CASE...]` from the repository root prints one line a case."""

from __future__ import annotations

import io
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from PIL import Image
from serve_support import flat_png, serve_process

KEY = "memory-key"
MB = 1 << 20


def _call(port: int, inputs: list[resources_pb2.Input]) -> str:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
    request = service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=inputs)
    try:
        answer = service_pb2_grpc.V2Stub(channel).PostModelOutputs(
            request, metadata=(("authorization", f"Key {KEY}"),), timeout=600)
    except grpc.RpcError as exc:
        return f"grpc {exc.code().name}"
    codes = sorted({o.status.code for o in answer.outputs})
    return f"status {answer.status.code}, outputs {len(answer.outputs)} {codes}"


def _image(data: bytes) -> resources_pb2.Input:
    return resources_pb2.Input(data=resources_pb2.Data(image=resources_pb2.Image(base64=data)))


def _small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _pngs(side: int) -> Callable[[int], list[str]]:
    data = flat_png(side, side)

    def send(port: int) -> list[str]:
        with ThreadPoolExecutor(6) as pool:
            return list(pool.map(lambda _: _call(port, [_image(data)]), range(6)))
    return send


def _full_requests(count: int) -> Callable[[int], list[str]]:
    """`count` requests at once, each just under the 128 MB default: 13 videos of 9.8 MB."""
    inputs = [resources_pb2.Input(data=resources_pb2.Data(video=resources_pb2.Video(
        base64=bytes([n]) * 9_800_000))) for n in range(13)]

    def send(port: int) -> list[str]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: _call(port, inputs), range(count)))
    return send


CASES: dict[str, Callable[[], Callable[[int], object]]] = {
    "idle": lambda: lambda port: _call(port, [_image(_small_png())]),
    "six-13000-pngs": lambda: _pngs(13000),
    "six-9000-pngs": lambda: _pngs(9000),
    "5000-images": lambda: lambda port: _call(port, [_image(_small_png())] * 5000),
    "127-MB-request": lambda: _full_requests(1),
    "eight-127-MB-requests": lambda: _full_requests(8),
    "495-MB-request": lambda: lambda port: _call(port, [resources_pb2.Input(
        data=resources_pb2.Data(video=resources_pb2.Video(base64=b"\0" * 495 * 1000 * 1000)))]),
}


def measure(name: str) -> str:
    send = CASES[name]()
    with tempfile.TemporaryDirectory() as tmp, serve_process(Path(tmp), key=KEY) as served:
        began = time.monotonic()
        outcome = send(served.port)
        took = time.monotonic() - began
        time.sleep(1)
        peak, held = served.memory("VmHWM"), served.memory("VmRSS")
    return (f"{name}: peak {peak / MB:.0f} MB, held after {held / MB:.0f} MB, "
            f"{took:.1f} s; {outcome}")


if __name__ == "__main__":
    for case in sys.argv[1:] or list(CASES):
        print(measure(case), flush=True)
