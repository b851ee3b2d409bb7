"""The output files' formats: timeline.json, frames.csv and the chunk list (chunks.json)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

from pipeline.types import Chunk, Concept, Frame, Limits, ModelInfo, VideoInfo


def chunk_dict(chunk: Chunk) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": chunk.index, "file": chunk.path, "start_ms": chunk.start_ms,
        "end_ms": chunk.end_ms, "size_bytes": chunk.size_bytes, "frames": chunk.frames,
        "reencoded": chunk.reencoded,
        # Exact start and end (seconds as a fraction) so a resumed run re-offsets identically.
        "start": str(chunk.start), "end": str(chunk.end),
    }
    if chunk.packets is not None:
        out["packets"] = list(chunk.packets)  # built from the source's samples [first, end)
    return out


def chunk_from_dict(raw: Mapping[str, Any]) -> Chunk:
    packets = raw.get("packets")
    return Chunk(int(raw["index"]), str(raw["file"]), Fraction(raw["start"]), Fraction(raw["end"]),
                 int(raw["size_bytes"]), int(raw["frames"]), bool(raw.get("reencoded", False)),
                 (int(packets[0]), int(packets[1])) if packets else None)


def chunk_list(source: str, limits: Limits, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """chunks.json as `split` writes it."""
    return {"source": source, "limits": limits.as_dict(),
            "chunks": [chunk_dict(c) for c in chunks]}


def frame_dict(index: int, frame: Frame) -> dict[str, Any]:
    return {"frame_info": {"index": index, "time": frame.time_ms},
            "data": {"concepts": [{"id": c.id, "name": c.name, "value": c.value}
                                  for c in frame.concepts]}}


def frame_from_dict(raw: Mapping[str, Any]) -> Frame:
    return Frame(int(raw["frame_info"]["time"]),
                 tuple(Concept(str(c["id"]), str(c["name"]), float(c["value"]))
                       for c in raw["data"]["concepts"]))


def timeline_dict(*, info: VideoInfo, backend: str, model: ModelInfo, sample_ms: int,
                  limits: Limits, chunks: Sequence[Chunk], attempts: Mapping[int, int],
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


def frames_csv(frames: Iterable[Frame]) -> Iterator[str]:
    """frames.csv, a row at a time: time_ms, concept_id, concept_name, value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time_ms", "concept_id", "concept_name", "value"])
    for frame in frames:
        for c in frame.concepts:
            writer.writerow([frame.time_ms, c.id, c.name, c.value])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()
