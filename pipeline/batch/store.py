"""The checkpoint store: one video's folder, DIR/VIDEO_ID, its layout, keys and file formats.

timeline.json (written last, atomically) marks a video done for one run key (backend, model,
sampling, limits); chunks.json lists its chunks; results/ holds each chunk's answer, saved the
moment it arrives, under a key that names the chunk exactly. Nothing outside this module reads
or writes these files' dicts."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.output import formats
from pipeline.output.files import atomic_write_json, atomic_write_lines, read_json
from pipeline.types import Chunk, ChunkResult, Frame, Limits, ModelInfo, VideoInfo

# Bumped when a checkpoint's meaning changes (2: frames saved on the source clock).
_CHECKPOINT_FORMAT = 2


@dataclass(frozen=True)
class RunKey:
    """What a result depends on besides the source: a change redoes the video."""

    backend: str
    model: ModelInfo
    sample_ms: int
    limits: Limits
    keep_audio: bool

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model.id, "sample_ms": self.sample_ms,
                "limits": self.limits.as_dict(), "keep_audio": self.keep_audio}

    def for_chunk(self, chunk: Chunk) -> dict[str, Any]:
        return {"format": _CHECKPOINT_FORMAT, "backend": self.backend, "model": self.model.id,
                "sample_ms": self.sample_ms, "start": str(chunk.start), "end": str(chunk.end),
                "frames": chunk.frames}


class VideoStore:
    """DIR/VIDEO_ID for one run key."""

    def __init__(self, out: str | Path, video_id: str, key: RunKey) -> None:
        self.root = Path(out) / video_id
        self.key = key
        self.timeline = self.root / "timeline.json"
        self.frames_csv = self.root / "frames.csv"
        self.chunk_list = self.root / "chunks.json"
        self.chunk_media = self.root / "chunks"
        self.results_dir = self.root / "results"

    def done(self) -> bool:
        """timeline.json is there, written under this run key."""
        timeline = read_json(self.timeline)
        return isinstance(timeline, dict) and timeline.get("run_key") == self.key.as_dict()

    def load_chunks(self, source: str) -> list[Chunk] | None:
        """The chunk list a previous run saved under this key, if every chunk file is there;
        chunks built from the source's samples are of `source` (the same content, by the id,
        wherever it lies now)."""
        saved = read_json(self.chunk_list)
        if not isinstance(saved, dict) or saved.get("run_key") != self.key.as_dict():
            return None
        try:
            chunks = [formats.chunk_from_dict(c) for c in saved["chunks"]]
        except (KeyError, TypeError, ValueError):
            return None
        chunks = [dataclasses.replace(c, path=source) if c.packets else c for c in chunks]
        return chunks if all(Path(c.path).exists() for c in chunks) else None

    def save_chunks(self, source: str, chunks: Sequence[Chunk]) -> None:
        atomic_write_json(self.chunk_list, {
            "run_key": self.key.as_dict(), "source": source,
            "chunks": [formats.chunk_dict(c) for c in chunks]})

    def clear_results(self) -> None:
        shutil.rmtree(self.results_dir, ignore_errors=True)

    def _result_path(self, chunk: Chunk) -> Path:
        return self.results_dir / f"chunk-{chunk.index:05d}.json"

    def result(self, chunk: Chunk) -> ChunkResult | None:
        """The chunk's saved answer, if one was saved for exactly this chunk and key."""
        raw = read_json(self._result_path(chunk))
        if not isinstance(raw, dict) or raw.get("key") != self.key.for_chunk(chunk):
            return None
        try:
            frames = tuple(formats.frame_from_dict(f) for f in raw["frames"])
            return ChunkResult(int(raw["index"]), frames, int(raw.get("attempts", 1)),
                               clock="source")
        except (KeyError, TypeError, ValueError):
            return None  # damaged by hand: predict the chunk again

    def save_result(self, chunk: Chunk, result: ChunkResult) -> None:
        """Save a result that is on the source clock, the moment it arrives."""
        assert result.clock == "source", "checkpoints hold source-clock frames"
        atomic_write_json(self._result_path(chunk), {
            "key": self.key.for_chunk(chunk), "index": result.index,
            "attempts": result.attempts,
            "frames": [formats.frame_dict(i, f) for i, f in enumerate(result.frames)]})

    def results(self, chunks: Sequence[Chunk]) -> dict[int, ChunkResult]:
        """Every saved answer among `chunks`, by chunk index."""
        found = {c.index: self.result(c) for c in chunks}
        return {i: r for i, r in found.items() if r is not None}

    def write_timeline(self, *, info: VideoInfo, chunks: Sequence[Chunk],
                       attempts: Mapping[int, int], frames: Sequence[Frame]) -> None:
        """frames.csv, then timeline.json (which marks the video done); the chunk files go."""
        key = self.key
        timeline = formats.timeline_dict(
            info=info, backend=key.backend, model=key.model, sample_ms=key.sample_ms,
            limits=key.limits, chunks=chunks, attempts=attempts, frames=frames)
        timeline["run_key"] = key.as_dict()
        atomic_write_lines(self.frames_csv, formats.frames_csv(frames))
        atomic_write_json(self.timeline, timeline)
        shutil.rmtree(self.chunk_media, ignore_errors=True)
