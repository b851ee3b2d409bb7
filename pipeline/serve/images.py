"""`serve` decodes an image input: its size read from the header first, pixels over the limit
refused before anything is decoded, and the decodes of all requests bounded together.

A flat-colour PNG of 13000x13000 is half a megabyte on the wire and half a gigabyte once
decoded: the bytes limits say nothing about what an image costs."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes
from PIL import Image, UnidentifiedImageError

from pipeline.backends import embedded
from pipeline.errors import ClientGoneError, OverLimitError, RejectedInputError
from pipeline.serve.caller import Caller, stop_if_gone

# Pillow refuses to open an image over twice its MAX_IMAGE_PIXELS (a decompression bomb) before
# we can read its size; a limit above that could never be reached.
PILLOW_LIMIT = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
_BOMB = re.compile(r"\((\d+) pixels\)")


class DecodeBudget:
    """Pixels decoded at once across all requests: a decode waits until its image fits, so
    several large images are decoded one after another, not together (an image larger than
    the whole budget is decoded alone)."""

    def __init__(self, pixels: int) -> None:
        self.total = pixels
        self._used = 0
        self._changed = threading.Condition()

    @contextmanager
    def take(self, pixels: int, caller: Caller) -> Iterator[None]:
        share = min(pixels, self.total)
        with self._changed:
            while self._used + share > self.total:
                stop_if_gone(caller)
                self._changed.wait(0.1)
            self._used += share
        try:
            yield
        finally:
            with self._changed:
                self._used -= share
                self._changed.notify_all()


def image_frame(data: bytes, max_pixels: int, budget: DecodeBudget,
                caller: Caller) -> np.ndarray:
    """An image input as the model's input frame; bad data or too many pixels is that input's
    error. Only the header is read before the pixel check (Pillow opens lazily)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            _check_pixels(width, height, max_pixels)
            with budget.take(width * height, caller):
                return embedded.frame_of(img)
    except Image.DecompressionBombError as exc:
        found = _BOMB.search(str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise OverLimitError(f"the image has {pixels}; the limit is {max_pixels:,} pixels",
                             code=codes.INPUT_OVER_LIMIT) from None
    except UnidentifiedImageError:
        raise RejectedInputError(_not_an_image(data), code=codes.INPUT_UNSUPPORTED_FORMAT) \
            from None
    except (OverLimitError, RejectedInputError, ClientGoneError):
        raise
    except Exception as exc:  # noqa: BLE001 (Pillow raises many types for damaged data)
        raise RejectedInputError(f"cannot decode the image: it is damaged ({type(exc).__name__})",
                                 code=codes.INPUT_UNSUPPORTED_FORMAT) from None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Clarifai's documented image limit is in megapixels (85): INPUT_OVER_LIMIT, one input
    over a limit that no re-split can fix."""
    if width * height > max_pixels:
        raise OverLimitError(f"the image is {width}x{height} ({width * height:,} pixels); the "
                             f"limit is {max_pixels:,} pixels", code=codes.INPUT_OVER_LIMIT)


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
