"""The `local` backend: the embedded model, in process, no network and no key."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline.backends import embedded
from pipeline.backends.models import embedded as embedded_model
from pipeline.backends.models import model_info
from pipeline.errors import InputError
from pipeline.media import decode
from pipeline.sampling import Grid, chunk_grid
from pipeline.types import (
    Chunk,
    ChunkResult,
    Concept,
    Frame,
    ImageBatch,
    Media,
    VideoBytes,
    VideoFile,
    VideoUrl,
)

BATCH = 8
Video = VideoFile | VideoBytes | VideoUrl


class LocalBackend:
    """Samples each chunk on the whole video's grid, so the merged timeline is evenly spaced;
    answers by instant (frame n: the chunk's n-th instant of that grid). A frames batch's
    images are those instants' frames, scored as they are. `exact_frames` for a compact proxy:
    its neighbouring frames are a whole interval apart, so the fast decode's nearest reference
    frame would be another instant."""

    name = "local"

    def __init__(self, model: str, *, decode_threads: int = 0, exact_frames: bool = False) -> None:
        self.model = model_info("local", model)
        found = embedded_model(model)
        assert found is not None, "model_info says which models are embedded"
        self._model = found
        self._decode_threads = decode_threads
        self._fast = not exact_frames
        # Chunks decoded side by side each get one inference thread: less contention with the
        # decoders than every call spreading over every core (13.7x against 12.2x real time).
        self._classifier = embedded.shared(found, threads=decode_threads or None)

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        grid = chunk_grid(chunk.start, chunk.end, chunk.instants, sample_ms)
        if isinstance(media, ImageBatch):  # the images of those instants
            scores = self._image_scores(media.images, grid.count, chunk)
        else:
            scores = self._video_scores(media, grid, chunk)
        return ChunkResult(chunk.index, tuple(
            Frame(n, self._concepts(row)) for n, row in enumerate(scores)), clock="instants")

    def _video_scores(self, media: Video, grid: Grid, chunk: Chunk) -> np.ndarray:
        scores = self._scores(media, grid, fast=self._fast)
        if len(scores) < grid.count and self._fast:
            # Some streams mark every frame non-reference; decode them all.
            scores = self._scores(media, grid, fast=False)
        if len(scores) < grid.count:
            raise InputError(chunk.path, f"decoded {len(scores)} of {grid.count} sampled frames")
        return scores

    def _image_scores(self, images: tuple[bytes, ...], count: int, chunk: Chunk) -> np.ndarray:
        if len(images) != count:
            raise InputError(chunk.path, f"batch {chunk.index} holds {len(images)} images for "
                             f"{count} instants")
        return self._score_all(embedded.image_to_frame(image) for image in images)

    def _scores(self, media: Video, grid: Grid, *, fast: bool) -> np.ndarray:
        where, data = _decodable(media)
        decoded = decode.decode(where, grid, threads=self._decode_threads, fast=fast, data=data)
        return self._score_all(decoded)

    def _score_all(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """Every frame's scores (frames x concepts), scored BATCH at a time as they come."""
        parts: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == BATCH:
                parts.append(self._classifier.scores(batch))
                batch = []
        if batch:
            parts.append(self._classifier.scores(batch))
        return np.concatenate(parts) if parts else np.zeros((0, len(self._model.concepts)))

    def _concepts(self, row: np.ndarray) -> tuple[Concept, ...]:
        pairs = [Concept(cid, name, round(float(v), 6))
                 for (cid, name), v in zip(self._model.concepts, row, strict=True)]
        return tuple(sorted(pairs, key=lambda c: -c.value))

    def close(self) -> None:
        pass


def _decodable(media: Video) -> tuple[str | None, bytes | None]:
    """What ffmpeg reads: a file or URL where it lies, or bytes fed to its input."""
    if isinstance(media, VideoBytes):
        return None, media.data
    return (media.path if isinstance(media, VideoFile) else media.url), None
