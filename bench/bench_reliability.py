"""Reliability figures: the seconds from SIGTERM to exit in each case that used to wait for ever,
and the bookkeeping of a run over 3,000 inputs (its time, and the bytes it writes).

    python bench/bench_reliability.py [--checkout DIR] [--only stop|books]

`--checkout DIR` runs another checkout's code (an earlier commit, for a before/after): the
program under test is `python -m pipeline` with DIR as its working directory. Each stuck case
is real: a gRPC server that holds every request, one that is always UNAVAILABLE (the retry
backoff), a lock another process holds (--lock-wait 600), an object store that accepts
connections and never answers, an http source dripping a byte every 2 s, and `serve` with two
drip-fed URL requests in flight."""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from common import OUT, REPO

KEY = "bench-reliability-key"
TIMEOUT_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkout", type=Path, default=REPO)
    parser.add_argument("--only", choices=("stop", "books"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-reliability-", dir=_out()))
    video = _video(work / "v.mp4")
    if args.only in (None, "books"):
        seconds, written = bookkeeping(args.checkout, work)
        print(f"3,000 inputs: {seconds:.2f} s, {written:,} bytes written (wchar)")
    if args.only in (None, "stop"):
        for name, case in CASES.items():
            took = case(args.checkout, work / name, video)
            shown = "still running at 60 s (killed)" if took is None else f"{took:.2f} s"
            print(f"SIGTERM to exit, {name}: {shown}")


def _out() -> Path:
    OUT.mkdir(exist_ok=True)
    return OUT


def _video(path: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25,noise=alls=20:allf=t", "-t", "12",
                    "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", "-g", "25",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    old = time.time() - 600
    os.utime(path, (old, old))
    return path


def _cli(checkout: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=checkout,
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def _sigterm_after(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> float | None:
    """SIGTERM once `ready()` (and half a second more); seconds to exit, None if it did not."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    return time.monotonic() - sent


# -- bookkeeping ----------------------------------------------------------------------------------
def bookkeeping(checkout: Path, work: Path) -> tuple[float, int]:
    """A run over 3,000 inputs that each fail at once; its seconds and the bytes it wrote."""
    listing = work / "list.txt"
    listing.write_text("".join(f"{work}/missing/video-{i:04d}.mp4\n" for i in range(3000)))
    wrapper = ("import runpy, sys\nsys.argv = ['video-pipeline', *sys.argv[1:]]\n"
               "try:\n    runpy.run_module('pipeline', run_name='__main__')\nfinally:\n"
               "    sys.stderr.write(open('/proc/self/io').read())\n")
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", wrapper, "run", str(listing), "--out",
                           str(work / "books"), "--no-progress"], cwd=checkout,
                          capture_output=True, text=True)
    took = time.monotonic() - began
    return took, int(done.stderr.split("wchar: ")[1].split()[0])


# -- the stuck cases ------------------------------------------------------------------------------
class _Held(service_pb2_grpc.V2Servicer):
    def __init__(self, answer: Callable[[grpc.ServicerContext], Any]) -> None:
        self.answer = answer
        self.arrived = 0
        self.release = threading.Event()

    def PostModelOutputs(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.arrived += 1
        return self.answer(context)


@contextlib.contextmanager
def _grpc(servicer: _Held) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(8))
    service_pb2_grpc.add_V2Servicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        servicer.release.set()
        server.stop(0)


def _clarifai(checkout: Path, out: Path, video: Path, port: int) -> subprocess.Popen[str]:
    return _cli(checkout, "run", str(video), "--out", str(out), "--backend", "clarifai",
                "--api-base", f"127.0.0.1:{port}", "--insecure", "--no-progress",
                "--max-bytes", "200000", env={"CLARIFAI_PAT": KEY})


def held_request(checkout: Path, out: Path, video: Path) -> float | None:
    servicer = _Held(lambda context: servicer.release.wait(600) and service_pb2
                     .MultiOutputResponse())
    with _grpc(servicer) as port:
        return _sigterm_after(_clarifai(checkout, out, video, port),
                              lambda: servicer.arrived >= 1)


def retry_backoff(checkout: Path, out: Path, video: Path) -> float | None:
    def unavailable(context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAVAILABLE, "down")
    servicer = _Held(unavailable)
    with _grpc(servicer) as port:
        return _sigterm_after(_clarifai(checkout, out, video, port),
                              lambda: servicer.arrived >= 3)


def lock_wait(checkout: Path, out: Path, video: Path) -> float | None:
    first = _cli(checkout, "run", str(video), "--out", str(out), "--no-progress",
                 "--backend", "clarifai", "--api-base", "127.0.0.1:1", "--insecure",
                 env={"CLARIFAI_PAT": KEY})  # holds the lock while it retries a dead API
    try:
        time.sleep(3)
        second = _cli(checkout, "run", str(video), "--out", str(out), "--no-progress",
                      "--lock-wait", "600")
        started = time.monotonic()
        return _sigterm_after(second, lambda: time.monotonic() - started > 3)
    finally:
        first.kill()
        first.wait()


def silent_storage(checkout: Path, out: Path, video: Path) -> float | None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(listener.accept()[0] for _ in range(16)),
                     daemon=True).start()
    try:
        proc = _cli(checkout, "run", str(video), "--out", str(out), "--no-progress",
                    "--backend", "clarifai", "--api-base", "127.0.0.1:1", "--insecure",
                    "--mode", "url", "--stage", "s3://bucket/prefix", "--s3-endpoint-url",
                    f"http://127.0.0.1:{listener.getsockname()[1]}",
                    env={"CLARIFAI_PAT": KEY, "AWS_ACCESS_KEY_ID": "x",
                         "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"})
        return _sigterm_after(proc, lambda: len(held) >= 1)
    finally:
        listener.close()
        for conn in held:
            conn.close()


class _Drip(http.server.BaseHTTPRequestHandler):
    """Declares a 1 MB body and sends one byte every 2 s."""

    def do_GET(self) -> None:  # noqa: N802
        self.server.gets += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(2)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _dripping() -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    httpd.daemon_threads = True
    httpd.gets = 0  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/cam.ts", httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def drip_download(checkout: Path, out: Path, video: Path) -> float | None:
    with _dripping() as (url, httpd):
        proc = _cli(checkout, "run", url, str(video), "--out", str(out), "--no-progress")
        return _sigterm_after(proc, lambda: httpd.gets >= 2)  # type: ignore[attr-defined]


def serve_with_drips(checkout: Path, out: Path, video: Path) -> float | None:
    with _dripping() as (url, httpd):
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--port", "0",
                                 "--allow-local-urls", "--workers", "2"], cwd=checkout,
                                text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        line = ""
        while "serving on" not in line:
            line = proc.stderr.readline()
        port = int(line.rsplit(":", 1)[1])
        channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
        stub = service_pb2_grpc.V2Stub(channel)
        request = service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[
            resources_pb2.Input(data=resources_pb2.Data(video=resources_pb2.Video(url=url)))])
        calls = [stub.PostModelOutputs.future(request, timeout=120) for _ in range(2)]
        took = _sigterm_after(proc, lambda: httpd.gets >= 1)  # type: ignore[attr-defined]
        for call in calls:
            call.cancel()
        channel.close()
        return took


CASES: dict[str, Callable[[Path, Path, Path], float | None]] = {
    "a request that never returns": held_request,
    "a retry backoff (API always UNAVAILABLE)": retry_backoff,
    "waiting for another run's lock (--lock-wait 600)": lock_wait,
    "an object store that never answers (URL mode)": silent_storage,
    "a URL source dripping a byte every 2 s": drip_download,
    "serve with two drip-fed URL requests in flight": serve_with_drips,
}


if __name__ == "__main__":
    main()
