"""`serve` against hostile clients and inputs: nothing waits forever, memory stays bounded,
work stops when the client is gone, and the process ends soon after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import media
import pytest
from batch_support import run_cli
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes
from serve_support import drip_server, flat_png, image, logged, serve_process, video

from pipeline.backends.clarifai import ClarifaiBackend
from pipeline.backends.clarifai_status import classify, rpc_error
from pipeline.batch.runner import Runner
from pipeline.errors import OverLimitError, RejectedInputError, TransientBackendError
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Server
from pipeline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "limits-test-key"
METADATA = (("authorization", f"Key {KEY}"),)
GB = 1 << 30
MB = 1 << 20


def v2(port: int) -> service_pb2_grpc.V2Stub:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
    return service_pb2_grpc.V2Stub(channel)


def request(*inputs: resources_pb2.Input, sample_ms: int = 0,
            ) -> service_pb2.PostModelOutputsRequest:
    model = resources_pb2.Model(output_info=resources_pb2.OutputInfo(
        output_config=resources_pb2.OutputConfig(sample_ms=sample_ms)))
    return service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=list(inputs),
                                               model=model)


def call(port: int, *inputs: resources_pb2.Input, timeout: float = 60,
         sample_ms: int = 0) -> service_pb2.MultiOutputResponse:
    return v2(port).PostModelOutputs(request(*inputs, sample_ms=sample_ms), metadata=METADATA,
                                     timeout=timeout)


def later(port: int, *inputs: resources_pb2.Input, timeout: float = 60) -> grpc.Future:
    return v2(port).PostModelOutputs.future(request(*inputs), metadata=METADATA,
                                            timeout=timeout)


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this test process (an in-process serve's decodes)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(") ")
        if name.endswith("(ffmpeg") and int(rest.split()[1]) == os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def noisy_video(media_dir: Path) -> Path:
    """10 s, 160x120, 10 fps, 1 s GOPs, ~660 kB: chunks of 400 kB or less."""
    path = media_dir / "limits-noisy.mp4"
    if not path.exists():
        media.testsrc(path, seconds=10, size="160x120", rate=10, gop=10,
                      extra_vf="noise=alls=20:allf=t")
    return path


@pytest.fixture(scope="session")
def long_video(media_dir: Path) -> Path:
    """120 s at 64x64, 10 fps: 1200 frames to score at sample_ms 100."""
    path = media_dir / "limits-long.mp4"
    if not path.exists():
        media.testsrc(path, seconds=120, size="64x64", rate=10, gop=50)
    return path


# -- 1. URL downloads: an overall deadline, the client's deadline, never every worker --------
def test_drip_fed_urls_do_not_starve_a_bytes_request(serve: Callable[..., Server],
                                                     png: bytes) -> None:
    """--workers 2 and two URLs that send a byte every 5 s: an image sent as bytes is still
    answered within a few seconds; the URL that found the one download slot taken is told
    to retry (RPC_REQUEST_QUEUE_FULL) at once."""
    server = serve(workers=2, limits=InputLimits(allow_local_urls=True))
    with drip_server() as drip:
        slow = [later(server.port, video(url=drip.url("body")), timeout=40) for _ in range(2)]
        time.sleep(1)
        began = time.monotonic()
        answer = call(server.port, image(png), timeout=20)
        took = time.monotonic() - began
        assert answer.status.code == codes.SUCCESS and took < 5, took
        refused = [f.result() for f in slow if f.done()]
        assert [r.status.code for r in refused] == [codes.RPC_REQUEST_QUEUE_FULL]
        assert refused[0].status.description == \
            "serve is downloading as many URLs as it allows at once (1); retry shortly"
        assert isinstance(classify(codes.RPC_REQUEST_QUEUE_FULL, "", "nsfw"),
                          TransientBackendError)
        for future in slow:
            future.cancel()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_url_download_has_an_overall_time_limit(serve: Callable[..., Server],
                                                  where: str) -> None:
    """A URL that drips its headers or its body fails once the download has taken the URL
    time limit in all, not once a single read has."""
    server = serve(limits=InputLimits(allow_local_urls=True, url_timeout=2))
    with drip_server(every=0.5) as drip:
        began = time.monotonic()
        answer = call(server.port, video(url=drip.url(where)), timeout=30)
        took = time.monotonic() - began
    assert answer.outputs[0].status.code == codes.INPUT_DOWNLOAD_FAILED
    assert answer.outputs[0].status.description == \
        "the download took longer than the 2 s allowed", answer.outputs[0].status
    assert took < 6, took


def test_a_url_download_stops_when_its_client_gives_up(serve: Callable[..., Server]) -> None:
    """A client with a 2 s deadline: serve closes the connection to the dripping URL soon
    after, and logs the request as ended by the deadline."""
    server = serve(limits=InputLimits(allow_local_urls=True, url_timeout=60))
    with drip_server(every=1) as drip:
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            call(server.port, video(url=drip.url("body")), timeout=2)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: bool(drip.closed), 10)
        assert drip.closed[0] - began < 4.5, drip.closed[0] - began
    wait_for(lambda: bool(logged(server)), 10)
    (entry,) = logged(server)
    assert entry["status"] == "grpc:DEADLINE_EXCEEDED" and entry["seconds"] < 4.5, entry


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- 2. SIGTERM ends the process -------------------------------------------------------------
def test_sigterm_ends_serve_within_seconds_while_downloads_hang(tmp_path: Path) -> None:
    """`python -m pipeline serve` with two dripping URL downloads in flight: SIGTERM, and the
    process has exited (code 0, "stopped" printed) within 10 s."""
    with drip_server() as drip, serve_process(
            tmp_path, "--allow-local-urls", "--workers", "2", key=KEY) as served:
        slow = [later(served.port, video(url=drip.url("body")), timeout=60) for _ in range(2)]
        wait_for(lambda: drip.served >= 1, 20)
        time.sleep(0.5)
        began = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        try:
            code = served.proc.wait(timeout=20)
        finally:
            took = time.monotonic() - began
            for future in slow:
                future.cancel()
        assert code == 0 and "stopped" in served.text() and took < 10, (took, served.text())
        assert "Traceback" not in served.text()


# -- 3. images: pixels bounded from the header, decodes bounded together ---------------------
def test_six_huge_pngs_at_once_are_refused_from_their_headers(tmp_path: Path) -> None:
    """Six concurrent 13000x13000 PNGs (~0.5 MB each, 507 MB each once decoded): each refused
    with one sentence, and serve's peak memory stays under 500 MB (7.1 GB before the limit)."""
    huge = flat_png(13000, 13000)
    with serve_process(tmp_path, key=KEY) as served, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: call(served.port, image(huge), timeout=120),
                                range(6)))
        peak = served.memory("VmHWM")
    for answer in answers:
        (output,) = answer.outputs
        assert output.status.code == codes.INPUT_OVER_LIMIT, output.status
        assert output.status.description == (
            "the image is 13000x13000 (169,000,000 pixels); the limit is 85,000,000 pixels")
    assert peak < 500 * MB, f"peak {peak / MB:.0f} MB"
    assert isinstance(classify(codes.INPUT_OVER_LIMIT, "", "nsfw"), RejectedInputError)


def test_an_image_pillow_calls_a_bomb_gets_the_same_refusal(serve: Callable[..., Server]) -> None:
    """15000x15000 pixels, over what Pillow opens at all: the same over-limit status, the
    pixel count in the sentence, not "damaged"."""
    (output,) = call(serve().port, image(flat_png(15000, 15000))).outputs
    assert output.status.code == codes.INPUT_OVER_LIMIT
    assert output.status.description == \
        "the image has 225,000,000 pixels; the limit is 85,000,000 pixels"


def test_a_smaller_pixel_limit_refuses_what_it_must(serve: Callable[..., Server],
                                                    png: bytes) -> None:
    """A 64x48 PNG (3072 pixels) passes a limit of 3072 and is refused at 3071."""
    assert call(serve(limits=InputLimits(max_image_pixels=3072)).port,
                image(png)).status.code == codes.SUCCESS
    (output,) = call(serve(limits=InputLimits(max_image_pixels=3071)).port,
                     image(png)).outputs
    assert output.status.description == \
        "the image is 64x48 (3,072 pixels); the limit is 3,071 pixels"


def test_limits_out_of_range_are_configuration_errors() -> None:
    """`serve --max-image-pixels` above what Pillow opens, a request limit gRPC cannot hold, a
    URL time of 0: exit 2 with one sentence, before anything listens."""
    for flag, value, words in (("--max-image-pixels", "200000000", "decompression bombs"),
                               ("--max-request-bytes", "3000000000", "gRPC's largest"),
                               ("--url-timeout", "0", "more than 0")):
        done = run_cli("serve", "--port", "0", flag, value, timeout=60)
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_large_images_at_once_are_decoded_within_a_memory_bound(tmp_path: Path) -> None:
    """Six concurrent 9000x9000 PNGs (under the pixel limit): all answered, serve's peak
    memory stays under 1 GB, and it gives the memory back afterwards."""
    large = flat_png(9000, 9000)
    with serve_process(tmp_path, key=KEY) as served, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: call(served.port, image(large), timeout=300),
                                range(6)))
        peak, after = served.memory("VmHWM"), served.memory("VmRSS")
    assert [a.status.code for a in answers] == [codes.SUCCESS] * 6
    assert peak < GB, f"peak {peak / MB:.0f} MB"
    assert after < 500 * MB, f"held after: {after / MB:.0f} MB"


# -- 4. inputs per request -------------------------------------------------------------------
def test_more_than_128_inputs_are_refused(serve: Callable[..., Server], png: bytes) -> None:
    """129 images in one request: refused whole, at once, as a bad request (128 pass)."""
    server = serve()
    began = time.monotonic()
    refused = call(server.port, *[image(png)] * 129)
    assert refused.status.code == codes.PREDICT_INVALID_REQUEST and not refused.outputs
    assert refused.status.description == \
        "the request has 129 inputs; the limit is 128 a request", refused.status
    assert time.monotonic() - began < 5
    assert len(call(server.port, *[image(png)] * 128).outputs) == 128
    assert isinstance(classify(codes.PREDICT_INVALID_REQUEST, "", "nsfw"), RejectedInputError)


# -- 5. bytes per request --------------------------------------------------------------------
def test_a_request_over_the_byte_limit_is_refused_before_it_is_decoded(
        tmp_path: Path) -> None:
    """A 200 MB request to serve's default 128 MB limit: gRPC's RESOURCE_EXHAUSTED "larger than
    max", and serve's peak memory stays far below the request's size."""
    with serve_process(tmp_path, key=KEY) as served:
        with pytest.raises(grpc.RpcError) as caught:
            call(served.port, video(b"\0" * 200_000_000), timeout=120)
        peak = served.memory("VmHWM")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = str(caught.value.details())
    assert "larger than max" in details, details
    assert isinstance(rpc_error(caught.value.code(), "chunk 0", details), OverLimitError)
    assert peak < 300 * MB, f"peak {peak / MB:.0f} MB"


def test_memory_of_a_request_at_the_byte_limit_is_given_back(tmp_path: Path) -> None:
    """A 127 MB request (13 inputs of 9.8 MB that are not videos): answered input by input,
    and a second after the answer serve holds under 200 MB again (255-335 MB before)."""
    inputs = [video(bytes([n]) * 9_800_000) for n in range(13)]
    with serve_process(tmp_path, key=KEY) as served:
        answer = call(served.port, *inputs, timeout=300)
        time.sleep(1.5)
        held = served.memory("VmRSS")
    assert answer.status.code == codes.FAILURE and len(answer.outputs) == 13
    assert held < 200 * MB, f"held after: {held / MB:.0f} MB"


def test_the_clarifai_client_resplits_what_the_byte_limit_refuses(
        serve: Callable[..., Server], noisy_video: Path, tmp_path: Path) -> None:
    """serve takes 300 kB requests, the client cuts 400 kB chunks: gRPC's refusal reaches the
    client as over the limit, and the refused chunks are cut smaller, the run done."""
    server = serve(max_request_bytes=300_000)
    client = ClarifaiBackend("nsfw", key=KEY, api_base=f"127.0.0.1:{server.port}",
                             insecure=True, sleep=lambda s: None)
    settings = Settings.from_options(backend="clarifai", sample_ms=500, insecure=True,
                                     max_bytes=400_000)
    (outcome,) = Runner(settings, str(tmp_path), backend=client).run([str(noisy_video)])
    assert outcome.status == "done", outcome.error
    chunks = json.loads((tmp_path / str(outcome.id) / "timeline.json").read_text())["chunks"]
    assert any(c["attempts"] > 1 for c in chunks)
    assert client.requests > len(logged(server)) and all(
        r["size_bytes"] <= 300_000 for r in logged(server))


# -- 6. a client that has gone away ----------------------------------------------------------
def test_a_video_decode_stops_when_the_client_deadline_passes(
        serve: Callable[..., Server], long_video: Path, png: bytes) -> None:
    """A 120 s video at sample_ms 100 with a 2 s deadline: serve stops decoding soon after the
    deadline (its log says so, no ffmpeg is left), and the next request is answered at once."""
    server = serve(workers=1)
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        call(server.port, video(long_video.read_bytes()), timeout=2, sample_ms=100)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    answer = call(server.port, image(png), timeout=60)
    took = time.monotonic() - began
    assert answer.status.code == codes.SUCCESS and took < 6, took
    first = logged(server)[0]
    assert first["status"] == "grpc:DEADLINE_EXCEEDED" and first["seconds"] < 4, first
    wait_for(lambda: not ffmpeg_children(), 5)
    wait_for(lambda: not [t for t in threading.enumerate() if "_read_frames" in t.name], 5)


def test_stopping_abandons_a_long_decode_with_a_retryable_answer(
        serve: Callable[..., Server], long_video: Path) -> None:
    """stop(grace=1) while a video is decoded: the decode stops, the client gets UNAVAILABLE
    (which clients retry), and stop returns within a few seconds saying all requests ended."""
    server = serve()
    pending = v2(server.port).PostModelOutputs.future(
        request(video(long_video.read_bytes()), sample_ms=100), metadata=METADATA, timeout=60)
    wait_for(lambda: bool(ffmpeg_children()), 20)
    began = time.monotonic()
    assert server.stop(grace=1) is True
    assert time.monotonic() - began < 4
    with pytest.raises(grpc.RpcError) as caught:
        pending.result()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert logged(server)[0]["status"] == "grpc:UNAVAILABLE"
    wait_for(lambda: not ffmpeg_children(), 5)
