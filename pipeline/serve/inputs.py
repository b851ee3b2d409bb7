"""What `serve` does with one input: fetch (URL) or take (bytes), check limits, run the model.

Errors are raised as BackendError subclasses carrying the Clarifai status code to answer with,
so the server turns every failure of an input into that input's status."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import numpy as np
from clarifai_grpc.grpc.api import resources_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes

from pipeline.backends import embedded
from pipeline.backends.models import EmbeddedModel
from pipeline.errors import (
    BackendError,
    FFmpegError,
    InputError,
    OverLimitError,
    RejectedInputError,
)
from pipeline.media import containers, decode, mp4read
from pipeline.probe import probe
from pipeline.sampling import clarifai_grid
from pipeline.serve.caller import Caller, stop_if_gone
from pipeline.serve.fetch import FetchLimits, fetch
from pipeline.types import to_ms

_BATCH = 8


@dataclass(frozen=True)
class InputLimits:
    """Clarifai's limits (seed page, decimal): bytes 10 MB, URL 80 MB, 600 s; an image 85
    megapixels (its upload limits). `url_timeout` is for a whole download, redirects included."""

    max_bytes: int = 10_000_000
    max_url_bytes: int = 80_000_000
    max_seconds: float = 600.0
    url_timeout: float = 30.0
    allow_local_urls: bool = False
    max_image_pixels: int = 85_000_000

    @property
    def fetching(self) -> FetchLimits:
        return FetchLimits(self.max_url_bytes, self.url_timeout, self.allow_local_urls)


def kind(item: resources_pb2.Input) -> str:
    """video-bytes | video-url | image-bytes | image-url | none (for the request log)."""
    data = item.data
    for media in ("video", "image"):
        if data.HasField(media):
            part = getattr(data, media)
            return f"{media}-url" if part.url and not part.base64 else f"{media}-bytes"
    return "none"


def is_url(item: resources_pb2.Input) -> bool:
    """An input that serve downloads (it holds one of the download slots)."""
    return kind(item).endswith("-url")


def payload(item: resources_pb2.Input, limits: InputLimits, caller: Caller) -> bytes:
    """The input's bytes, downloaded if it is a URL, within the size limit for its kind."""
    data = item.data
    part = data.video if data.HasField("video") else data.image
    raw = bytes(part.base64)  # each read of the field is a copy of it: one read
    if raw:
        if len(raw) > limits.max_bytes:
            raise OverLimitError(f"input is {len(raw)} bytes; the limit for bytes "
                                 f"input is {limits.max_bytes}", code=codes.INPUT_VIDEO_OVER_LIMIT)
        return raw
    if part.url:
        return fetch(part.url, limits.fetching, caller)
    raise RejectedInputError("input has neither bytes (base64) nor a url",
                             code=codes.INPUT_VIDEO_INVALID_ARGUMENT)


# -- the model ---------------------------------------------------------------------------------
def predict_video(data: bytes, model: EmbeddedModel, sample_ms: int, limits: InputLimits,
                  caller: Caller) -> list[resources_pb2.Frame]:
    """One frame per interval, at the middle of the interval, as Clarifai answers; only frames
    really decoded (a truncated video is an error, never its last frame repeated). Frames are
    scored as they are decoded; once the client is gone the decode is killed."""
    with tempfile.TemporaryDirectory(prefix="serve-") as tmp:
        path = os.path.join(tmp, "input")
        with open(path, "wb") as fh:
            fh.write(data)
        duration = _duration(path, limits)
        grid = clarifai_grid(duration, sample_ms)
        frames = cast(Generator[np.ndarray, None, None], decode.decode(path, grid))
        try:
            scores = _scores(frames, model, caller)
        except FFmpegError as exc:
            raise RejectedInputError(f"cannot decode the video ({_without(exc.summary, path)})",
                                     code=codes.INPUT_VIDEO_UNSUPPORTED_FORMAT) from exc
        finally:
            frames.close()  # ends ffmpeg if it is still decoding (the client gone)
    return [resources_pb2.Frame(
        frame_info=resources_pb2.FrameInfo(index=i, time=to_ms(t)),
        data=resources_pb2.Data(concepts=concepts(model, row)))
        for i, (t, row) in enumerate(zip(grid.times(), scores, strict=False))]


def _duration(path: str, limits: InputLimits) -> Fraction:
    """From the MP4 index when there is one whose data is all there (no process: ffprobe costs
    ~0.15 s a request), else from ffprobe's packets."""
    size = os.path.getsize(path)
    stated = containers.stated_size(path)
    if stated is not None and stated > size:
        raise RejectedInputError(f"the video is truncated: its container says {stated:,} bytes "
                                 f"but {size:,} arrived", code=codes.INPUT_VIDEO_INVALID_ARGUMENT)
    track = mp4read.video_track(path)
    duration = track.duration if track is not None and track.frames else None
    if duration is None:
        try:
            duration = Fraction(probe(path).duration_ms, 1000)
        except InputError as exc:
            raise RejectedInputError(_without(exc.problem, path),
                                     code=codes.INPUT_VIDEO_UNSUPPORTED_FORMAT) from exc
    if duration > limits.max_seconds:
        raise OverLimitError(f"video is {float(duration):.1f} s long; the limit is "
                             f"{limits.max_seconds:g} s", code=codes.INPUT_VIDEO_OVER_LIMIT)
    return duration


def _without(text: str, path: str) -> str:
    """A message about our temporary copy, without its path (the client never saw it)."""
    for shown in (f"file:{path}: ", f"{path}: ", f"file:{path}", path):
        text = text.replace(shown, "")
    return text


def check_takes_video(model: EmbeddedModel) -> None:
    """An image model refuses a video input, before anything is decoded. Clarifai documents
    no code for this; MODEL_INVALID_ARGUMENT (21202) says the model cannot take what it was
    given (a client fails that input, unretried), and the description says what it takes."""
    if not model.takes_video:
        raise RejectedInputError(
            f"model {model.id!r} takes image inputs only, not video: send the video's frames "
            "as images (video-pipeline: --strategy frames)", code=codes.MODEL_INVALID_ARGUMENT)


def predict_images(frames: Iterable[np.ndarray], model: EmbeddedModel, caller: Caller,
                   ) -> list[list[resources_pb2.Concept]]:
    """Each image's concepts, the images scored in batches."""
    return [concepts(model, row) for row in _scores(frames, model, caller)]


def _scores(frames: Iterable[np.ndarray], model: EmbeddedModel, caller: Caller) -> np.ndarray:
    """Scored a batch at a time as the frames come; between batches, stop if the client is
    gone (a 600 s video at 100 ms is 6000 frames: held all at once, they would be ~900 MB)."""
    classifier = embedded.shared(model)
    rows = []
    for batch in _batches(iter(frames)):
        stop_if_gone(caller)
        rows.append(classifier.scores(batch))
    return np.concatenate(rows) if rows else np.zeros((0, len(model.concepts)))


def _batches(frames: Iterator[np.ndarray]) -> Iterator[list[np.ndarray]]:
    while batch := list(itertools.islice(frames, _BATCH)):
        yield batch


def concepts(model: EmbeddedModel, row: np.ndarray) -> list[resources_pb2.Concept]:
    """Highest value first, as Clarifai lists them."""
    found = [resources_pb2.Concept(id=cid, name=name, value=float(v), app_id="main")
             for (cid, name), v in zip(model.concepts, row, strict=True)]
    return sorted(found, key=lambda c: -c.value)


def check(exc: BackendError) -> int:
    """The Clarifai status code an input error answers with."""
    return exc.code if isinstance(exc.code, int) else codes.FAILURE
