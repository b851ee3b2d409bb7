"""The output files' formats: timeline.json, frames.csv, chunks.json and chunk checkpoints."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from pipeline.types import Chunk, ChunkResult, Concept, Frame, Limits, ModelInfo, VideoInfo


def chunk_dict(chunk: Chunk, attempts: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": chunk.index, "file": chunk.path, "start_ms": chunk.start_ms,
        "end_ms": chunk.end_ms, "size_bytes": chunk.size_bytes, "frames": chunk.frames,
        "reencoded": chunk.reencoded,
        # Exact start and end (seconds as a fraction) so a resumed run re-offsets identically.
        "start": str(chunk.start), "end": str(chunk.end),
    }
    if attempts is not None:
        out["attempts"] = attempts
    return out


def chunk_from_dict(raw: dict[str, Any]) -> Chunk:
    return Chunk(int(raw["index"]), str(raw["file"]), Fraction(raw["start"]), Fraction(raw["end"]),
                 int(raw["size_bytes"]), int(raw["frames"]), bool(raw.get("reencoded", False)))


def frame_dict(index: int, frame: Frame) -> dict[str, Any]:
    return {"frame_info": {"index": index, "time": frame.time_ms},
            "data": {"concepts": [{"id": c.id, "name": c.name, "value": c.value}
                                  for c in frame.concepts]}}


def result_dict(result: ChunkResult, key: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "index": result.index, "attempts": result.attempts,
            "frames": [frame_dict(i, f) for i, f in enumerate(result.frames)]}


def result_from_dict(raw: dict[str, Any]) -> ChunkResult:
    frames = tuple(
        Frame(int(f["frame_info"]["time"]),
              tuple(Concept(str(c["id"]), str(c["name"]), float(c["value"]))
                    for c in f["data"]["concepts"]))
        for f in raw["frames"])
    return ChunkResult(int(raw["index"]), frames, int(raw.get("attempts", 1)))


def timeline_dict(*, info: VideoInfo, backend: str, model: ModelInfo, sample_ms: int,
                  limits: Limits, chunks: Sequence[Chunk], attempts: dict[int, int],
                  frames: Sequence[Frame]) -> dict[str, Any]:
    return {
        "source": {"path": info.path, "duration_ms": info.duration_ms,
                   "size_bytes": info.size_bytes},
        "backend": backend,
        "model": {"id": model.id, "name": model.name},
        "sample_ms": sample_ms,
        "limits": limits.as_dict(),
        "chunks": [{"index": c.index, "start_ms": c.start_ms, "end_ms": c.end_ms,
                    "size_bytes": c.size_bytes, "frames": c.frames, "reencoded": c.reencoded,
                    "attempts": attempts.get(c.index, 1)} for c in chunks],
        "frames": [frame_dict(i, f) for i, f in enumerate(frames)],
    }


def frames_csv(frames: Sequence[Frame]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time_ms", "concept_id", "concept_name", "value"])
    for frame in frames:
        for c in frame.concepts:
            writer.writerow([frame.time_ms, c.id, c.name, c.value])
    return buf.getvalue()
