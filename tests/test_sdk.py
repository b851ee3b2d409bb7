"""`serve` as Clarifai's Python SDK (`clarifai` 12.x, the `sdk` extra) sees it: scripts written
for Clarifai run unchanged against it, on real gRPC over 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clarifai.client.app import App
from clarifai.client.input import Inputs
from clarifai.client.model import Model

from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.sdk]

KEY = "sdk-test-key"
VERSION = "aa47919c9a8d4d94bfa283121281bcc4"
CONCEPTS = {("ai_RT20lm2Q", "sfw"), ("ai_KxzHKtPl", "nsfw")}


def model(server: Server, **options: Any) -> Model:
    """A Model as Clarifai's docs build it, pointed at `serve` (the plain-text base URL form)."""
    named = {} if "url" in options else {"user_id": "clarifai", "app_id": "main",
                                         "model_id": "nsfw-recognition"}
    return Model(base_url=f"http://127.0.0.1:{server.port}", **{"pat": KEY, **named, **options})


def methods(server: Server) -> list[str]:
    lines = Path(str(server.config.request_log)).read_text().splitlines()
    return [json.loads(line)["method"] for line in lines]


def frame_times(response: Any) -> list[int]:
    return [f.frame_info.time for f in response.outputs[0].data.frames]


def test_model_loads_the_served_model_with_or_without_a_version(
        serve: Callable[..., Server]) -> None:
    """Model(...) by id, alias, version and URL loads the embedded model's id, type and concepts."""
    server = serve()
    for built in (model(server), model(server, model_id="nsfw", model_version={"id": VERSION}),
                  model(server, url="https://clarifai.com/clarifai/main/models/nsfw-recognition")):
        built.load_info()
        info = built.model_info
        assert (info.id, info.model_type_id, info.model_version.id) == (
            "nsfw-recognition", "visual-classifier", VERSION)
        assert {(c.id, c.name) for c in info.output_info.data.concepts} == CONCEPTS
    with pytest.raises(Exception, match="MODEL_DOES_NOT_EXIST") as caught:
        model(server, model_version={"id": "0123456789abcdef"})
    assert VERSION in str(caught.value)


def test_a_video_by_bytes_and_by_file_path_is_sampled_at_sample_ms(
        serve: Callable[..., Server], small_video: Path) -> None:
    """predict_by_bytes and predict_by_filepath with output_config sample_ms: one frame per 2 s."""
    sdk = model(serve())
    by_bytes = sdk.predict_by_bytes(small_video.read_bytes(), input_type="video",
                                    output_config={"sample_ms": 2000})
    by_path = sdk.predict_by_filepath(str(small_video), input_type="video",
                                      output_config={"sample_ms": 2000})
    for response in (by_bytes, by_path):
        assert frame_times(response) == [1000, 3000, 5000, 7000]
        concepts = response.outputs[0].data.frames[0].data.concepts
        assert {(c.id, c.name) for c in concepts} == CONCEPTS


def test_an_image_is_predicted_without_input_type(serve: Callable[..., Server],
                                                  png: bytes) -> None:
    """The SDK reads the model type (input field "image") and sends the image as one."""
    server = serve()
    response = model(server).predict_by_bytes(png)
    assert {(c.id, c.name) for c in response.outputs[0].data.concepts} == CONCEPTS
    assert methods(server) == ["GetModel", "GetModel", "GetModelType", "PostModelOutputs"]


def test_a_video_without_input_type_is_refused_with_the_fix(
        serve: Callable[..., Server], small_video: Path) -> None:
    """A video the SDK sends as an image gets an error that says to pass input_type="video"."""
    with pytest.raises(Exception, match="INPUT_UNSUPPORTED_FORMAT") as caught:
        model(serve()).predict_by_bytes(small_video.read_bytes())
    assert 'input_type=\\"video\\"' in str(caught.value)


def test_urls_and_several_inputs_in_one_predict(serve: Callable[..., Server],
                                                web: tuple[Path, str], small_video: Path,
                                                png: bytes) -> None:
    """predict_by_url (with --allow-local-urls) and predict(inputs=[video, image]), in order."""
    root, base = web
    (root / "v.mp4").write_bytes(small_video.read_bytes())
    sdk = model(serve(limits=InputLimits(allow_local_urls=True)))
    by_url = sdk.predict_by_url(f"{base}/v.mp4", input_type="video",
                                output_config={"sample_ms": 4000})
    assert frame_times(by_url) == [2000, 6000]
    inputs = [Inputs.get_input_from_bytes("v", video_bytes=small_video.read_bytes()),
              Inputs.get_input_from_bytes("i", image_bytes=png)]
    both = sdk.predict(inputs=inputs, output_config={"sample_ms": 4000})
    video, image = both.outputs
    assert (video.input.id, image.input.id) == ("v", "i")
    assert len(video.data.frames) == 2 and len(image.data.concepts) == 2


def test_a_wrong_key_is_named_by_the_sdks_error(serve: Callable[..., Server]) -> None:
    """Model(...) with a key the server does not take raises CONN_KEY_INVALID, naming the key."""
    with pytest.raises(Exception, match="CONN_KEY_INVALID") as caught:
        model(serve(), pat="not-the-key")
    assert "Invalid API key" in str(caught.value)


def test_an_unknown_model_id_is_named_by_the_sdks_error(serve: Callable[..., Server]) -> None:
    """Model(...) for a model serve lacks raises MODEL_DOES_NOT_EXIST naming it and those served."""
    with pytest.raises(Exception, match="MODEL_DOES_NOT_EXIST") as caught:
        model(serve(), model_id="general-image-recognition")
    assert "general-image-recognition" in str(caught.value) and "nsfw" in str(caught.value)


def test_an_app_lists_the_served_models_and_concepts(serve: Callable[..., Server]) -> None:
    """App.list_models and list_concepts page through to the end (an empty page stops them)."""
    server = serve()
    app = App(user_id="me", app_id="mine", base_url=f"http://127.0.0.1:{server.port}", pat=KEY)
    assert [m.id for m in app.list_models()] == ["nsfw-recognition", "nsfw-image-recognition"]
    assert {(c.id, c.name) for c in app.list_concepts()} == CONCEPTS


def test_a_typo_on_model_costs_one_probe_and_says_so(serve: Callable[..., Server]) -> None:
    """An attribute Model lacks: one signature probe, then the SDK's own "non-pythonic" error."""
    server = serve()
    sdk = model(server)
    with pytest.raises(Exception, match="non-pythonic"):
        sdk.predict_by_byte(b"")
    assert methods(server) == ["GetModel", "GetModelVersion", "PostModelOutputs"]
