"""What `serve` does with one input: fetch (URL) or take (bytes), check limits, run the model.

Errors are raised as BackendError subclasses carrying the Clarifai status code to answer with,
so the server turns every failure of an input into that input's status."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from http.client import HTTPMessage
from typing import IO
from urllib.parse import urlparse

import numpy as np
from clarifai_grpc.grpc.api import resources_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes
from PIL import UnidentifiedImageError

from pipeline import redact
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
from pipeline.types import to_ms

_BATCH = 8
_READ = 1 << 16


@dataclass(frozen=True)
class InputLimits:
    """Clarifai's limits (seed page, decimal): bytes 10 MB, URL 80 MB, 600 s."""

    max_bytes: int = 10_000_000
    max_url_bytes: int = 80_000_000
    max_seconds: float = 600.0
    url_timeout: float = 30.0
    allow_local_urls: bool = False


def kind(item: resources_pb2.Input) -> str:
    """video-bytes | video-url | image-bytes | image-url | none (for the request log)."""
    data = item.data
    for media in ("video", "image"):
        if data.HasField(media):
            part = getattr(data, media)
            return f"{media}-url" if part.url and not part.base64 else f"{media}-bytes"
    return "none"


def payload(item: resources_pb2.Input, limits: InputLimits) -> bytes:
    """The input's bytes, downloaded if it is a URL, within the size limit for its kind."""
    data = item.data
    part = data.video if data.HasField("video") else data.image
    if part.base64:
        if len(part.base64) > limits.max_bytes:
            raise OverLimitError(f"input is {len(part.base64)} bytes; the limit for bytes "
                                 f"input is {limits.max_bytes}", code=codes.INPUT_VIDEO_OVER_LIMIT)
        return bytes(part.base64)
    if part.url:
        return fetch(part.url, limits)
    raise RejectedInputError("input has neither bytes (base64) nor a url",
                             code=codes.INPUT_VIDEO_INVALID_ARGUMENT)


# -- URLs ------------------------------------------------------------------------------------
def fetch(url: str, limits: InputLimits) -> bytes:
    """GET an http(s) URL: size-capped, time-limited, public addresses only unless allowed."""
    _check_url(url, limits.allow_local_urls)
    opener = urllib.request.build_opener(_CheckedRedirects(limits.allow_local_urls))
    request = urllib.request.Request(url, headers={"User-Agent": "video-pipeline-serve"})
    try:
        with opener.open(request, timeout=limits.url_timeout) as resp:
            return _read_capped(resp, limits.max_url_bytes, time.monotonic() + limits.url_timeout)
    except (urllib.error.URLError, OSError) as exc:
        # The URL's query string (a presigned signature) never goes back in a message.
        raise RejectedInputError(redact.text(f"could not download {url}: {exc}"),
                                 code=codes.INPUT_VIDEO_DOWNLOAD_FAILED) from exc


def _read_capped(resp: object, cap: int, deadline: float) -> bytes:
    length = resp.headers.get("Content-Length")  # type: ignore[attr-defined]
    if length and length.isdigit() and int(length) > cap:
        raise OverLimitError(f"URL input is {length} bytes; the limit is {cap}",
                             code=codes.INPUT_VIDEO_OVER_LIMIT)
    parts: list[bytes] = []
    size = 0
    while block := resp.read(_READ):  # type: ignore[attr-defined]
        size += len(block)
        if size > cap:
            raise OverLimitError(f"URL input is over {cap} bytes, the limit",
                                 code=codes.INPUT_VIDEO_OVER_LIMIT)
        if time.monotonic() > deadline:
            raise RejectedInputError("download took too long", code=codes.INPUT_DOWNLOAD_FAILED)
        parts.append(block)
    return b"".join(parts)


def _check_url(url: str, allow_local: bool) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RejectedInputError(f"only http(s) URLs are accepted, not {url!r}",
                                 code=codes.INPUT_VIDEO_INVALID_URL)
    if allow_local:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RejectedInputError(f"cannot resolve {parsed.hostname}: {exc}",
                                 code=codes.INPUT_VIDEO_DOWNLOAD_FAILED) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise RejectedInputError(
                f"{parsed.hostname} is a local or private address ({address}); "
                "serve refuses those unless started with --allow-local-urls",
                code=codes.INPUT_VIDEO_INVALID_URL)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect must pass the same checks as the URL it came from."""

    def __init__(self, allow_local: bool) -> None:
        self.allow_local = allow_local

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        _check_url(newurl, self.allow_local)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# -- the model ---------------------------------------------------------------------------------
def predict_video(data: bytes, model: EmbeddedModel, sample_ms: int,
                  limits: InputLimits) -> list[resources_pb2.Frame]:
    """One frame per interval, at the middle of the interval, as Clarifai answers; only frames
    really decoded (a truncated video is an error, never its last frame repeated)."""
    with tempfile.TemporaryDirectory(prefix="serve-") as tmp:
        path = os.path.join(tmp, "input")
        with open(path, "wb") as fh:
            fh.write(data)
        duration = _duration(path, limits)
        grid = clarifai_grid(duration, sample_ms)
        try:
            scores = _scores(list(decode.decode(path, grid)), model)
        except FFmpegError as exc:
            raise RejectedInputError(f"cannot decode the video ({_without(exc.summary, path)})",
                                     code=codes.INPUT_VIDEO_UNSUPPORTED_FORMAT) from exc
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


def image_frame(data: bytes) -> np.ndarray:
    """An image input as the model's input frame; bad data is that input's error."""
    try:
        return embedded.image_to_frame(data)
    except UnidentifiedImageError:
        raise RejectedInputError(_not_an_image(data), code=codes.INPUT_UNSUPPORTED_FORMAT) \
            from None
    except Exception as exc:  # Pillow raises many types for damaged data
        raise RejectedInputError(f"cannot decode the image: it is damaged ({type(exc).__name__})",
                                 code=codes.INPUT_UNSUPPORTED_FORMAT) from None


def predict_images(frames: Sequence[np.ndarray], model: EmbeddedModel,
                   ) -> list[list[resources_pb2.Concept]]:
    """Each image's concepts, the images scored in batches."""
    return [concepts(model, row) for row in _scores(frames, model)]


def _not_an_image(data: bytes) -> str:
    """Clarifai's SDK sends a video as an image when called without input_type (the model type
    of a classifier lists only "image"): say so, rather than guess which one the caller meant."""
    if looks_like_video(data):
        return ("cannot decode the image: these bytes are a video; send it as a video "
                "(data.video; in Clarifai's Python SDK, input_type=\"video\")")
    return "cannot decode the image: not an image format this server reads (JPEG, PNG, WebP, " \
        "GIF, BMP, TIFF)"


def looks_like_video(data: bytes) -> bool:
    """MP4/MOV (but not the AVIF/HEIF stills of the same box format), Matroska/WebM, AVI,
    MPEG-TS, told by their first bytes."""
    if data[4:8] == b"ftyp":
        return data[8:11] not in (b"avi", b"hei", b"mif", b"hev")
    if data[:4] == b"RIFF":
        return data[8:12] == b"AVI "
    return data[:4] == b"\x1a\x45\xdf\xa3" or data[0:1] == data[188:189] == b"\x47"


def _scores(decoded: Sequence[np.ndarray], model: EmbeddedModel) -> np.ndarray:
    classifier = embedded.shared(model)
    rows = [classifier.scores(decoded[i:i + _BATCH]) for i in range(0, len(decoded), _BATCH)]
    return np.concatenate(rows) if rows else np.zeros((0, len(model.concepts)))


def concepts(model: EmbeddedModel, row: np.ndarray) -> list[resources_pb2.Concept]:
    """Highest value first, as Clarifai lists them."""
    found = [resources_pb2.Concept(id=cid, name=name, value=float(v), app_id="main")
             for (cid, name), v in zip(model.concepts, row, strict=True)]
    return sorted(found, key=lambda c: -c.value)


def check(exc: BackendError) -> int:
    """The Clarifai status code an input error answers with."""
    return exc.code if isinstance(exc.code, int) else codes.FAILURE
