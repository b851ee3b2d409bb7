"""The `local` backend: the embedded model, in process, no network and no key."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline.backends import embedded
from pipeline.backends.models import EMBEDDED
from pipeline.backends.models import embedded as embedded_model
from pipeline.errors import InputError, ModelNotAvailableError
from pipeline.media import decode
from pipeline.sampling import Grid, global_grid
from pipeline.types import Chunk, ChunkResult, Concept, Frame, Media, ModelInfo, to_ms

BATCH = 8


class LocalBackend:
    """Samples each chunk on the whole video's grid, so the merged timeline is evenly spaced;
    answers on the source clock (the instants it scores are the source's). A frames batch's
    images are those instants' frames, scored as they are. `exact_frames` for a compact proxy:
    its neighbouring frames are a whole interval apart, so the fast decode's nearest reference
    frame would be another instant."""

    name = "local"

    def __init__(self, model: str, *, decode_threads: int = 0, exact_frames: bool = False) -> None:
        found = embedded_model(model)
        if found is None:
            raise ModelNotAvailableError(model, sorted(EMBEDDED))
        self._model = found
        self.model = ModelInfo(found.id, found.name)
        self._decode_threads = decode_threads
        self._fast = not exact_frames
        # Chunks decoded side by side each get one inference thread: less contention with the
        # decoders than every call spreading over every core (13.7x against 12.2x real time).
        self._classifier = embedded.shared(found, threads=decode_threads or None)

    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        grid = global_grid(chunk.start, chunk.end, sample_ms)
        times = [to_ms(chunk.start + t) for t in grid.times()]
        if media.images is not None:  # a frames batch: the images of those instants
            scores = self._image_scores(media.images, grid.count, chunk)
        else:
            scores = self._video_scores(media, grid, chunk)
        return ChunkResult(chunk.index, tuple(
            Frame(t, self._concepts(row)) for t, row in zip(times, scores, strict=True)),
            clock="source")

    def _video_scores(self, media: Media, grid: Grid, chunk: Chunk) -> np.ndarray:
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

    def _scores(self, media: Media, grid: Grid, *, fast: bool) -> np.ndarray:
        decoded = decode.decode(media.path or media.url, grid, threads=self._decode_threads,
                                fast=fast, data=media.data)
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
