"""The compact and frames strategies against a real `serve` over gRPC (and the local backend):
requests and their sizes, the timeline on the local backend's grid, agreement with copy,
determinism, resume after SIGKILL, an image-only model, and `plan`'s costs."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import media
import pytest
from batch_support import cli, kill_after_saving, run_cli, summary
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2
from serve_support import logged_server

from pipeline.batch.runner import Runner
from pipeline.probe import probe
from pipeline.send import strategies
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import ServeConfig, Server
from pipeline.settings import Settings
from pipeline.types import ImageBatch, Limits, VideoBytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "strategies-key-7d1e"
SECONDS = 32  # 32 instants at 1000 ms
# compact: chunks of 8 s (4 requests); frames: 8 images a request (4 requests).
COMPACT: dict[str, Any] = {"strategy": "compact", "max_seconds": 8}
FRAMES: dict[str, Any] = {"strategy": "frames", "images_per_request": 8}
GRID = [500 + 1000 * k for k in range(SECONDS)]


@pytest.fixture(scope="module")
def motion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 s of 320x240 at 25 fps with real motion: skin-toned gradients drifting (open_nsfw
    scores them 0.03-0.2, not all ~0) under a test pattern sliding across; 1 s keyframes."""
    path = tmp_path_factory.mktemp("strategies") / "motion.mp4"
    graph = ("gradients=s=320x240:r=25:speed=0.05:c0=0xffdbac:c1=0x8d5524:c2=0xc68642:"
             "c3=0xf1c27d[bg];testsrc2=s=96x72:r=25[fg];"
             "[bg][fg]overlay=x='mod(t*37,320)-48':y='120+60*sin(t)'")
    media.ffmpeg("-f", "lavfi", "-i", graph, "-t", str(SECONDS), "-c:v", "libx264",
                 "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with logged_server(tmp_path_factory.mktemp("serve"), KEY) as started:
        yield started


def _requests(server: Server, since: float = 0) -> list[dict[str, Any]]:
    assert server.config.request_log is not None
    lines = Path(server.config.request_log).read_text().splitlines()
    return [r for r in map(json.loads, lines)
            if r["method"] == "PostModelOutputs" and r["time"] >= since]


def _run(video: Path, out: Path, server: Server | None = None, **options: Any) -> Any:
    """One in-process run; (outcome, timeline.json, chunks.json, requests it sent)."""
    clarifai: dict[str, Any] = {} if server is None else {
        "backend": "clarifai", "api_base": f"127.0.0.1:{server.port}", "insecure": True,
        "api_key": KEY}
    began = time.time()
    (outcome,) = Runner(Settings.from_options(**clarifai, **options), str(out)).run([str(video)])
    sent = _requests(server, began) if server is not None else []
    if outcome.status != "done":
        return outcome, None, None, sent
    root = out / str(outcome.id)
    return (outcome, json.loads((root / "timeline.json").read_text()),
            json.loads((root / "chunks.json").read_text()), sent)


def _values(timeline: dict[str, Any]) -> dict[int, float]:
    """nsfw's value by frame time."""
    return {f["frame_info"]["time"]: next(c["value"] for c in f["data"]["concepts"]
                                         if c["name"] == "nsfw") for f in timeline["frames"]}


def _agree(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean absolute difference, share of the same label at 0.5, over the instants both have."""
    common = sorted(set(a) & set(b))
    mad = sum(abs(a[t] - b[t]) for t in common) / len(common)
    same = sum((a[t] >= 0.5) == (b[t] >= 0.5) for t in common) / len(common)
    return mad, same, len(common)


@pytest.fixture(scope="module")
def runs(motion: Path, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """copy, compact and frames through serve; copy, compact and frames on the local backend.
    Copy sends the video whole (it fits), so serve scores the exact source frames at every
    instant: the reference."""
    out = tmp_path_factory.mktemp("runs")
    found = {name: _run(motion, out / name, server, **options)
             for name, options in (("copy", {}), ("compact", COMPACT), ("frames", FRAMES))}
    for name, options in (("local", {}), ("local-compact", COMPACT), ("local-frames", FRAMES)):
        found[name] = _run(motion, out / name, **options)
    return found


def test_compact_sends_whole_intervals_and_lands_on_the_grid(runs: Any) -> None:
    """Compact: 4 requests of 8 s each, exactly the chunks' bytes, chunks starting at multiples
    of sample_ms; the timeline holds every instant of the local backend's grid, once."""
    _, timeline, chunks, sent = runs["compact"]
    assert len(sent) == 4 and all(r["kind"] == "video-bytes" for r in sent)
    assert sorted(r["size_bytes"] for r in sent) == sorted(c["size_bytes"] for c in
                                                           chunks["chunks"])
    assert [(c["start_ms"], c["end_ms"], c["frames"]) for c in chunks["chunks"]] == [
        (0, 8000, 8), (8000, 16000, 8), (16000, 24000, 8), (24000, 32000, 8)]
    assert list(_values(timeline)) == GRID == list(_values(runs["local"][1]))


def test_frames_sends_batches_of_images_and_lands_on_the_grid(runs: Any) -> None:
    """Frames: ceil(32 / 8) requests of 8 JPEG inputs each (the images' bytes, every one
    within the limits); answers mapped back to their instants, the local backend's."""
    _, timeline, chunks, sent = runs["frames"]
    assert len(sent) == math.ceil(SECONDS / 8)
    assert [(r["kind"], r["inputs"]) for r in sent] == [("image-bytes*8", 8)] * 4
    assert sorted(r["size_bytes"] for r in sent) == sorted(c["size_bytes"] for c in
                                                           chunks["chunks"])
    assert list(_values(timeline)) == GRID
    assert [c["packets"] for c in chunks["chunks"]] == [[0, 8], [8, 16], [16, 24], [24, 32]]


@pytest.mark.parametrize("name", ["compact", "frames", "local-compact", "local-frames"])
def test_strategies_agree_with_copy(runs: Any, name: str) -> None:
    """On footage with motion, each strategy's values match copy's (through serve: the exact
    source frames) within MAD 0.05 and the same label on 95% of frames."""
    mad, same, shared = _agree(_values(runs[name][1]), _values(runs["copy"][1]))
    assert mad <= 0.05 and same >= 0.95 and shared == SECONDS, (mad, same, shared)
    assert max(_values(runs[name][1]).values()) > 0.02  # not a picture the model calls nothing


def test_local_backend_takes_every_strategy_on_its_grid(runs: Any) -> None:
    """The local backend scores compact's proxy chunks and frames' images at the same instants
    as the source's own frames."""
    for name in ("local", "local-compact", "local-frames"):
        assert list(_values(runs[name][1])) == GRID, name


def test_the_proxy_and_the_images_are_the_same_bytes_each_time(motion: Path,
                                                               tmp_path: Path) -> None:
    """Same input, same bytes: the proxy and the JPEGs made twice are identical, and so are
    their chunks."""
    info = probe(str(motion))
    digests = []
    for attempt in ("a", "b"):
        for name in ("compact", "frames"):
            sending = strategies.named(name).prepare(info, Limits(max_duration_ms=8000),
                                                     tmp_path / attempt, 1000)
            chunks = sending.chunks()
            digests.append((name, hashlib.sha256(Path(sending.source).read_bytes()).hexdigest(),
                            [(c.start, c.end, c.size_bytes) for c in chunks]))
    assert digests[:2] == digests[2:]


def test_a_compact_chunk_over_the_byte_limit_is_encoded_again_smaller(
        motion: Path, tmp_path: Path) -> None:
    """Under a byte limit smaller than one keyframe interval of the proxy, those frames are
    encoded again at a higher CRF; every chunk fits, all instants are kept, on the grid."""
    info = probe(str(motion))
    sending = strategies.named("compact").prepare(info, Limits(max_bytes=25_000), tmp_path,
                                                  1000)
    chunks = sending.chunks()
    assert any(c.reencoded for c in chunks) and all(c.size_bytes <= 25_000 for c in chunks)
    assert sum(c.frames for c in chunks) == SECONDS
    assert [c.start_ms for c in chunks] == [sum(c.frames for c in chunks[:i]) * 1000
                                            for i in range(len(chunks))]
    for chunk in chunks:
        with sending.open(chunk) as sent:
            assert isinstance(sent, VideoBytes) and len(sent.data) == chunk.size_bytes


def test_an_image_only_model_takes_frames_and_refuses_video(
        motion: Path, server: Server, runs: Any, tmp_path: Path) -> None:
    """`nsfw-image` (serve's image-only id for the embedded model): frames gives the same
    values as the video model; a video sent to it fails that video with MODEL_INVALID_ARGUMENT
    (21202), saying to send frames."""
    outcome, timeline, _, sent = _run(motion, tmp_path / "img", server, model="nsfw-image",
                                      **FRAMES)
    assert {r["model"] for r in sent} == {"nsfw-image"}
    assert _values(timeline) == _values(runs["frames"][1])
    outcome, timeline, _, sent = _run(motion, tmp_path / "vid", server, model="nsfw-image",
                                      strategy="compact")
    assert outcome.status == "failed" and timeline is None and len(sent) == 1
    assert sent[0]["status"] == status_code_pb2.MODEL_INVALID_ARGUMENT
    assert "takes image inputs only" in outcome.error and "--strategy frames" in outcome.error


def test_serve_answers_a_batch_of_images_in_order(server: Server, motion: Path,
                                                  tmp_path: Path) -> None:
    """One output per image input, in order, ids echoed, each the value the image gets alone;
    a bad image fails alone (MIXED_STATUS)."""
    sending = strategies.named("frames").prepare(probe(str(motion)), Limits(), tmp_path, 1000)
    with sending.open(sending.chunks()[0]) as batch:
        assert isinstance(batch, ImageBatch)
        images = [*batch.images[:5], b"not an image"]
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=server.port)
    v2 = service_pb2_grpc.V2Stub(channel)

    def predict(*data: bytes) -> service_pb2.MultiOutputResponse:
        inputs = [resources_pb2.Input(id=f"i{n}", data=resources_pb2.Data(
            image=resources_pb2.Image(base64=d))) for n, d in enumerate(data)]
        return v2.PostModelOutputs(service_pb2.PostModelOutputsRequest(
            model_id="nsfw", inputs=inputs), metadata=(("authorization", f"Key {KEY}"),))

    both = predict(*images)
    assert both.status.code == status_code_pb2.MIXED_STATUS
    assert [o.input.id for o in both.outputs] == [f"i{n}" for n in range(6)]
    assert both.outputs[5].status.code == status_code_pb2.INPUT_UNSUPPORTED_FORMAT
    for image, output in zip(images[:5], both.outputs, strict=False):
        alone = predict(image).outputs[0]
        assert [(c.name, round(c.value, 5)) for c in output.data.concepts] == [
            (c.name, round(c.value, 5)) for c in alone.data.concepts]
    channel.close()


@pytest.mark.parametrize("options", [["--strategy", "compact", "--max-seconds", "7"],
                                     ["--strategy", "frames", "--images-per-request", "8"]])
def test_sigkill_then_rerun_sends_no_finished_request_again(
        motion: Path, tmp_path: Path, options: list[str]) -> None:
    """Killed after a request's result is saved, a rerun sends only the rest (serve's request
    log, by size) and writes the timeline an uninterrupted run writes."""
    log = tmp_path / "requests.jsonl"
    slow = Server(ServeConfig(port=0, api_key=KEY, request_log=str(log), latency_ms=700))
    slow.start()
    args = ["run", str(motion), "--backend", "clarifai", "--insecure", "--api-base",
            f"127.0.0.1:{slow.port}", "--concurrency", "1", "--no-progress", *options]
    env = {"CLARIFAI_PAT": KEY}
    try:
        out = tmp_path / "out"
        saved, sizes = kill_after_saving(cli(*args, "--out", str(out), env=env), out, 1)
        rerun_began = time.time()
        assert run_cli(*args, "--out", str(out), env=env).returncode == 0
        resent = [r["size_bytes"] for r in _requests(slow, rerun_began)]
        assert sorted(resent) == sorted(sizes[i] for i in sizes if i not in saved)
        assert summary(out)["inputs"][0]["resumed"] == len(saved)
        reference = tmp_path / "reference"
        assert run_cli(*args, "--out", str(reference), env=env).returncode == 0
        name = next(out.glob("*/timeline.json")).relative_to(out)
        assert (out / name).read_bytes() == (reference / name).read_bytes()
    finally:
        slow.stop(grace=0)


def test_plan_prints_each_strategys_cost(motion: Path) -> None:
    """plan --json: requests, bytes, frames billed and client CPU for every strategy; compact
    needs ceil(instants / instants a request) requests, frames ceil(instants / 128)."""
    done = run_cli("plan", str(motion), "--strategy", "frames", "--max-seconds", "8", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    costs = {c["strategy"]: c for c in plan["strategies"]}
    assert plan["strategy"] == "frames" and set(costs) == {"copy", "compact", "frames"}
    assert (costs["compact"]["requests"], costs["frames"]["requests"]) == (4, 1)
    assert costs["compact"]["frames_billed"] == costs["frames"]["frames_billed"] == SECONDS
    assert all(c["bytes"] > 0 for c in costs.values())
    assert costs["compact"]["client_cpu_s"] > costs["copy"]["client_cpu_s"] > 0
    text = run_cli("plan", str(motion), "--strategy", "compact").stdout
    assert "* compact" in text and "frames billed" in text
    refused = run_cli("plan", str(motion), "--strategy", "thumbnails")
    assert refused.returncode == 2 and "--strategy must be one of" in refused.stderr


def test_a_compact_chunk_the_api_refuses_as_too_large_is_cut_smaller(
        motion: Path, runs: Any, tmp_path: Path) -> None:
    """INPUT_VIDEO_OVER_LIMIT for a compact chunk: it is cut again into shorter chunks of whole
    intervals, which land on the same instants with the same values."""
    _, timeline, chunks, _ = runs["compact"]
    largest = max(c["size_bytes"] for c in chunks["chunks"])
    strict = Server(ServeConfig(port=0, api_key=KEY, request_log=str(tmp_path / "log.jsonl"),
                                limits=InputLimits(max_bytes=largest * 7 // 10)))
    strict.start()
    try:
        outcome, again, _, sent = _run(motion, tmp_path / "out", strict, **COMPACT)
    finally:
        strict.stop(grace=0)
    refused = [r for r in sent if r["status"] == status_code_pb2.INPUT_VIDEO_OVER_LIMIT]
    assert outcome.status == "done" and refused
    assert len(sent) == 4 + 2 * len(refused)
    assert _values(again) == _values(timeline)
