"""`serve` as Clarifai's clients see it: real gRPC on 127.0.0.1, Clarifai's own stub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import media
import pytest
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2
from serve_support import image, logged, video

from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Server

pytestmark = pytest.mark.integration

KEY = "serve-test-key"
METADATA = (("authorization", f"Key {KEY}"),)
REPO = Path(__file__).resolve().parents[1]
NSFW_ID = "e9576d86d2004ed1a38ba0cf39ecb4b1"  # the seed page's id for Clarifai's NSFW model

# The seed page's Python example "Via bytes" (Clarifai's video predict page; docs/clarifai-api.md),
# verbatim; only the {PLACEHOLDERS} are filled in, as a user would.
SEED_EXAMPLE = '''
# Insert here the initialization code as outlined on this page:
# https://docs.clarifai.com/api-guide/api-overview/api-clients#client-installation-instructions

with open("{YOUR_VIDEO_FILE_LOCATION}", "rb") as f:
    file_bytes = f.read()

post_model_outputs_response = stub.PostModelOutputs(
    service_pb2.PostModelOutputsRequest(
        model_id="{THE_MODEL_ID}",
        version_id="{THE_MODEL_VERSION_ID}",  # This is optional. Defaults to the latest model version.
        inputs=[
            resources_pb2.Input(
                data=resources_pb2.Data(
                    video=resources_pb2.Video(
                        base64=file_bytes
                    )
                )
            )
        ]
    ),
    metadata=metadata
)
if post_model_outputs_response.status.code != status_code_pb2.SUCCESS:
    raise Exception("Post model outputs failed, status: " + post_model_outputs_response.status.description)

# Since we have one input, one output will exist here.
output = post_model_outputs_response.outputs[0]

# A separate prediction is available for each "frame".
for frame in output.data.frames:
    print("Predicted concepts on frame " + str(frame.frame_info.time) + ":")
    for concept in frame.data.concepts:
        print("\\t%s %.2f" % (concept.name, concept.value))
'''  # noqa: E501


@pytest.fixture(scope="session")
def short_video(media_dir: Path) -> Path:
    """4 s, 160x120, 10 fps."""
    path = media_dir / "serve-short.mp4"
    if not path.exists():
        media.testsrc(path, seconds=4, size="160x120", rate=10, gop=10)
    return path


def stub(server: Server) -> service_pb2_grpc.V2Stub:
    channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=server.port)
    return service_pb2_grpc.V2Stub(channel)


def predict(server: Server, *inputs: resources_pb2.Input, model_id: str = "nsfw",
            model: resources_pb2.Model | None = None,
            metadata: tuple[tuple[str, str], ...] = METADATA,
            ) -> service_pb2.MultiOutputResponse:
    request = service_pb2.PostModelOutputsRequest(model_id=model_id, inputs=list(inputs),
                                                  model=model)
    return stub(server).PostModelOutputs(request, metadata=metadata, timeout=60)


def test_the_seed_pages_python_example_runs_unchanged(
        serve: Callable[..., Server], short_video: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Clarifai's own "via bytes" example, placeholders filled, prints a frame every second."""
    server = serve()
    code = (SEED_EXAMPLE.replace("{YOUR_VIDEO_FILE_LOCATION}", str(short_video))
            .replace("{THE_MODEL_ID}", NSFW_ID)
            .replace("{THE_MODEL_VERSION_ID}", "aa7f35c01e0642fda5cf400f543e7c40"))
    exec(code, {"stub": stub(server), "metadata": METADATA, "service_pb2": service_pb2,
                "resources_pb2": resources_pb2, "status_code_pb2": status_code_pb2})
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("Predicted")] == [
        f"Predicted concepts on frame {t}:" for t in (500, 1500, 2500, 3500)]
    assert "\tsfw " in out and "\tnsfw " in out


def test_frames_carry_index_time_and_concepts(serve: Callable[..., Server],
                                              short_video: Path) -> None:
    """Mid-interval times, indexes from 0, both concepts with ids, highest value first."""
    response = predict(serve(), video(short_video.read_bytes()))
    assert response.status.code == status_code_pb2.SUCCESS
    (output,) = response.outputs
    assert output.status.code == status_code_pb2.SUCCESS
    assert [(f.frame_info.index, f.frame_info.time) for f in output.data.frames] == [
        (0, 500), (1, 1500), (2, 2500), (3, 3500)]
    concepts = output.data.frames[0].data.concepts
    assert {(c.id, c.name) for c in concepts} == {("ai_RT20lm2Q", "sfw"), ("ai_KxzHKtPl", "nsfw")}
    assert concepts[0].value >= concepts[1].value
    assert abs(sum(c.value for c in concepts) - 1) < 1e-3


@pytest.mark.parametrize("where", ["model_version", "model"])
def test_sample_ms_is_read_from_either_place(serve: Callable[..., Server], short_video: Path,
                                             where: str) -> None:
    """model.model_version.output_info (the SDK) or model.output_info (the docs)."""
    info = resources_pb2.OutputInfo(output_config=resources_pb2.OutputConfig(sample_ms=500))
    model = (resources_pb2.Model(model_version=resources_pb2.ModelVersion(output_info=info))
             if where == "model_version" else resources_pb2.Model(output_info=info))
    response = predict(serve(), video(short_video.read_bytes()), model=model)
    assert [f.frame_info.time for f in response.outputs[0].data.frames] == list(
        range(250, 4000, 500))


def test_image_input_gets_concepts(serve: Callable[..., Server], png: bytes) -> None:
    """An image answers with data.concepts, no frames."""
    response = predict(serve(), image(png))
    assert response.status.code == status_code_pb2.SUCCESS
    output = response.outputs[0]
    assert {c.name for c in output.data.concepts} == {"sfw", "nsfw"} and not output.data.frames


def test_url_inputs_are_fetched_when_local_urls_are_allowed(
        serve: Callable[..., Server], web: tuple[Path, str], short_video: Path,
        png: bytes) -> None:
    """Video and image URLs over http, from a test web server on 127.0.0.1."""
    root, base = web
    (root / "v.mp4").write_bytes(short_video.read_bytes())
    (root / "i.png").write_bytes(png)
    server = serve(limits=InputLimits(allow_local_urls=True))
    response = predict(server, video(url=f"{base}/v.mp4"))
    assert response.status.code == status_code_pb2.SUCCESS
    assert len(response.outputs[0].data.frames) == 4
    response = predict(server, image(url=f"{base}/i.png"))
    assert len(response.outputs[0].data.concepts) == 2
    assert [r["kind"] for r in logged(server)] == ["video-url", "image-url"]


def test_local_and_non_http_urls_are_refused_by_default(
        serve: Callable[..., Server], web: tuple[Path, str]) -> None:
    """Loopback without --allow-local-urls, and file:// always: INPUT_VIDEO_INVALID_URL."""
    server = serve()
    for url in (f"{web[1]}/v.mp4", "file:///etc/passwd"):
        response = predict(server, video(url=url))
        assert response.status.code == status_code_pb2.INPUT_VIDEO_INVALID_URL, url
        assert response.outputs[0].status.code == status_code_pb2.INPUT_VIDEO_INVALID_URL


def test_url_downloads_are_size_capped(serve: Callable[..., Server],
                                      web: tuple[Path, str]) -> None:
    """A URL larger than the URL limit is refused as over the limit."""
    root, base = web
    (root / "big.mp4").write_bytes(b"\0" * 300_000)
    server = serve(limits=InputLimits(max_url_bytes=200_000, allow_local_urls=True))
    response = predict(server, video(url=f"{base}/big.mp4"))
    assert response.status.code == status_code_pb2.INPUT_VIDEO_OVER_LIMIT


def test_unknown_model_gets_model_does_not_exist(serve: Callable[..., Server],
                                                 png: bytes) -> None:
    """Only ids that map to the embedded model are served."""
    response = predict(serve(), image(png), model_id="general-image-recognition")
    assert response.status.code == status_code_pb2.MODEL_DOES_NOT_EXIST
    for model_id in ("nsfw", "nsfw-recognition", NSFW_ID):
        assert predict(serve(), image(png), model_id=model_id).status.code == 10000


def test_requests_without_the_key_get_a_conn_status(serve: Callable[..., Server],
                                                    png: bytes) -> None:
    """No key: CONN_KEY_NOT_FOUND; a wrong key: CONN_KEY_INVALID. Nothing is predicted."""
    server = serve()
    assert predict(server, image(png), metadata=()).status.code == \
        status_code_pb2.CONN_KEY_NOT_FOUND
    wrong = (("authorization", "Key nope"),)
    assert predict(server, image(png), metadata=wrong).status.code == \
        status_code_pb2.CONN_KEY_INVALID


def test_too_large_and_too_long_inputs_get_a_status_quickly(
        serve: Callable[..., Server], short_video: Path) -> None:
    """Over --max-bytes, and over --max-seconds: INPUT_VIDEO_OVER_LIMIT, not a hang."""
    server = serve(limits=InputLimits(max_bytes=20_000, max_seconds=2))
    big = predict(server, video(b"\0" * 5_000_000))  # over gRPC's default 4 MiB, too
    assert big.status.code == status_code_pb2.INPUT_VIDEO_OVER_LIMIT
    assert "5000000 bytes" in big.status.description
    server = serve(limits=InputLimits(max_seconds=2))
    began = time.monotonic()
    long = predict(server, video(short_video.read_bytes()))
    assert long.status.code == status_code_pb2.INPUT_VIDEO_OVER_LIMIT
    assert "4.0 s long" in long.status.description and time.monotonic() - began < 10


def test_requests_are_served_concurrently(serve: Callable[..., Server], png: bytes) -> None:
    """Four requests with 600 ms latency each take well under 4 x 600 ms."""
    server = serve(latency_ms=600, workers=4)
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: predict(server, image(png)).status.code, range(4)))
    assert codes == [10000] * 4 and time.monotonic() - began < 1.8


def test_request_log_has_one_line_per_request(serve: Callable[..., Server], png: bytes,
                                              short_video: Path) -> None:
    """time, model, input kind, size, status, fault."""
    server = serve()
    predict(server, image(png))
    predict(server, video(short_video.read_bytes()), model_id="bogus")
    first, second = logged(server)
    assert first["kind"] == "image-bytes" and first["size_bytes"] == len(png)
    assert first["status"] == 10000 and first["fault"] is None and first["model"] == "nsfw"
    assert second["status"] == 21200 and second["kind"] == "video-bytes"
    assert second["time"] >= first["time"]


def test_faults_are_transient_codes_and_follow_the_seed(serve: Callable[..., Server],
                                                        png: bytes) -> None:
    """The same seed gives the same fault sequence; every fault is a retryable code."""
    retryable = {"grpc:UNAVAILABLE"} | {f"status:{c}" for c in (
        10030, 11005, 21351, 21352, 21354, 21355, 40030, 40031, 40032, 98004)} | {
        "output:21354"}
    runs = []
    for _ in range(2):
        server = serve(fault_rate=0.5, fault_seed=42)
        for _ in range(12):
            try:
                predict(server, image(png))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
        runs.append([r["fault"] for r in logged(server)])
    assert runs[0] == runs[1]
    faults = {f for f in runs[0] if f}
    assert faults and faults <= retryable and 3 <= len([f for f in runs[0] if f]) <= 10


def test_other_v2_methods_are_unimplemented(serve: Callable[..., Server]) -> None:
    """Beyond predicting and the model information, nothing is served: no writes, no search."""
    server = serve()
    for call, request in ((stub(server).PostInputs, service_pb2.PostInputsRequest()),
                          (stub(server).DeleteModel, service_pb2.DeleteModelRequest()),
                          (stub(server).PostSearches, service_pb2.PostSearchesRequest())):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=METADATA, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_model_information_answers_from_the_embedded_model(
        serve: Callable[..., Server]) -> None:
    """GetModel, GetModelType, List* pages: the served model's metadata, Clarifai's codes."""
    server = serve()
    v2 = stub(server)
    found = v2.GetModel(service_pb2.GetModelRequest(model_id=NSFW_ID), metadata=METADATA)
    assert (found.model.id, found.model.model_type_id, found.model.model_version.id) == (
        "nsfw-recognition", "visual-classifier", "aa47919c9a8d4d94bfa283121281bcc4")
    kind = v2.GetModelType(service_pb2.GetModelTypeRequest(model_type_id="visual-classifier"),
                           metadata=METADATA)
    assert list(kind.model_type.input_fields) == ["image"]
    pages = [v2.ListModelConcepts(service_pb2.ListModelConceptsRequest(
        model_id="nsfw", page=p, per_page=1), metadata=METADATA).concepts for p in (1, 2, 3)]
    assert [[c.name for c in page] for page in pages] == [["sfw"], ["nsfw"], []]
    assert not v2.ListModels(service_pb2.ListModelsRequest(page=2), metadata=METADATA).models
    for request, call in (
            (service_pb2.GetModelRequest(model_id="nsfw", version_id="nope"), v2.GetModel),
            (service_pb2.GetModelRequest(model_id="general-image-recognition"), v2.GetModel),
            (service_pb2.GetModelTypeRequest(model_type_id="text-to-text"), v2.GetModelType)):
        assert call(request, metadata=METADATA).status.code == \
            status_code_pb2.MODEL_DOES_NOT_EXIST
    assert [(r["method"], r["status"]) for r in logged(server)] == [
        ("GetModel", 10000), ("GetModelType", 10000), ("ListModelConcepts", 10000),
        ("ListModelConcepts", 10000), ("ListModelConcepts", 10000), ("ListModels", 10000),
        ("GetModel", 21200), ("GetModel", 21200), ("GetModelType", 21200)]


def test_model_information_needs_the_key_too(serve: Callable[..., Server]) -> None:
    """No key or a wrong one: the same CONN statuses as predicting, and nothing else answered."""
    v2 = stub(serve())
    missing = v2.GetModel(service_pb2.GetModelRequest(model_id="nsfw"))
    assert missing.status.code == status_code_pb2.CONN_KEY_NOT_FOUND and not missing.model.id
    wrong = v2.ListConcepts(service_pb2.ListConceptsRequest(),
                            metadata=(("authorization", "Key nope"),))
    assert wrong.status.code == status_code_pb2.CONN_KEY_INVALID and not wrong.concepts


def test_sigterm_stops_the_server_cleanly_after_requests_in_flight(png: bytes,
                                                                    tmp_path: Path) -> None:
    """`python -m pipeline serve`: SIGTERM lets the running request finish, then exits 0."""
    env = {**os.environ, "VIDEO_PIPELINE_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--port", "0", "--latency-ms", "1500"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = ""
        while "serving on" not in line:
            line = proc.stderr.readline()
            assert line, "serve exited before listening"
        port = int(line.rsplit(":", 1)[1])
        channel = ClarifaiChannel.get_insecure_grpc_channel(base="127.0.0.1", port=port)
        request = service_pb2.PostModelOutputsRequest(model_id="nsfw", inputs=[image(png)])
        future = service_pb2_grpc.V2Stub(channel).PostModelOutputs.future(
            request, metadata=METADATA, timeout=30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert future.result().status.code == status_code_pb2.SUCCESS
        assert proc.wait(timeout=15) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_truncated_video_gets_an_error_status_not_repeated_frames(
        serve: Callable[..., Server], bad_inputs: dict[str, Path]) -> None:
    """An MP4 whose index lists 30 s but whose data stops halfway: an error status that says
    truncated, never SUCCESS with the last decodable frame's scores repeated."""
    server = serve()
    answer = predict(server, video(bad_inputs["truncated"].read_bytes()))
    (output,) = answer.outputs
    assert output.status.code == status_code_pb2.INPUT_VIDEO_INVALID_ARGUMENT
    assert "truncated" in output.status.description and not output.data.frames


def test_error_texts_are_one_clean_sentence(serve: Callable[..., Server]) -> None:
    """Garbage sent as an image or a video: a sentence that names the problem, with no Python
    object repr and no path of the server's temporary files."""
    server = serve()
    garbage = b"this is not media\n" * 200
    for item, words in ((image(garbage), "cannot decode the image"),
                        (video(garbage), "not a readable video")):
        (output,) = predict(server, item).outputs
        text = output.status.description
        assert output.status.code != status_code_pb2.SUCCESS and words in text, text
        assert " at 0x" not in text and "/tmp" not in text and "serve-" not in text, text
