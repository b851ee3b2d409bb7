"""The output files' formats: timeline.json, frames.csv and the chunk list (chunks.json)."""

from __future__ import annotations

import csv
import io
import sys
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
    if chunk.instants is not None:
        out["instants"] = list(chunk.instants)  # --skip-similar: the instants it carries
    return out


def chunk_from_dict(raw: Mapping[str, Any]) -> Chunk:
    packets = raw.get("packets")
    instants = raw.get("instants")
    return Chunk(int(raw["index"]), str(raw["file"]), Fraction(raw["start"]), Fraction(raw["end"]),
                 int(raw["size_bytes"]), int(raw["frames"]), bool(raw.get("reencoded", False)),
                 (int(packets[0]), int(packets[1])) if packets else None,
                 tuple(int(i) for i in instants) if instants is not None else None)


def chunk_list(source: str, limits: Limits, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """chunks.json as `split` writes it."""
    return {"source": source, "limits": limits.as_dict(),
            "chunks": [chunk_dict(c) for c in chunks]}


def frame_dict(index: int, frame: Frame) -> dict[str, Any]:
    info: dict[str, int] = {"index": index, "time": frame.time_ms}
    if frame.carried_from_ms is not None:  # not sent: the concepts of the frame at that time
        info["carried_from_ms"] = frame.carried_from_ms
    return {"frame_info": info,
            "data": {"concepts": [{"id": c.id, "name": c.name, "value": c.value}
                                  for c in frame.concepts]}}


def frame_from_dict(raw: Mapping[str, Any]) -> Frame:
    """A frame back from a checkpoint; ids and names are interned, since a long video repeats
    the same few thousands of times (a third of the memory of a ten-hour timeline)."""
    intern = sys.intern
    info = raw["frame_info"]
    carried = info.get("carried_from_ms")
    return Frame(int(info["time"]),
                 tuple(Concept(intern(str(c["id"])), intern(str(c["name"])), float(c["value"]))
                       for c in raw["data"]["concepts"]),
                 int(carried) if carried is not None else None)


def timeline_head(*, info: VideoInfo, backend: str, model: ModelInfo, sample_ms: int,
                  limits: Limits, chunks: Sequence[Chunk], attempts: Mapping[int, int],
                  skipping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """timeline.json up to its frames (output.timeline streams the frames after it); a video
    that skipped similar frames says what it sent, carried and audited ("skipping")."""
    head = {
        "source": {"path": info.path, "duration_ms": info.duration_ms,
                   "size_bytes": info.size_bytes, "frame_rate": frame_rate(info)},
        "backend": backend,
        "model": {"id": model.id, "name": model.name},
        "sample_ms": sample_ms,
        "limits": limits.as_dict(),
        "chunks": [{"index": c.index, "start_ms": c.start_ms, "end_ms": c.end_ms,
                    "size_bytes": c.size_bytes, "frames": c.frames, "reencoded": c.reencoded,
                    "attempts": attempts.get(c.index, 1)} for c in chunks],
    }
    return head | ({"skipping": dict(skipping)} if skipping is not None else {})


def frame_rate(info: VideoInfo) -> float | None:
    """The video stream's frame rate, frames a second (6 decimals), for editors' clocks (the
    timeline.otio export); None when the container does not say."""
    try:
        rate = info.video.frame_rate
    except StopIteration:  # no video stream: nothing was sampled anyway
        return None
    return round(float(rate), 6) if rate else None


def frames_csv(frames: Iterable[Frame]) -> Iterator[str]:
    """frames.csv, a frame's rows at a time: time_ms, concept_id, concept_name, value,
    carried_from_ms (empty unless the frame was not sent: --skip-similar). Each concept's
    quoted id and name are made once by the csv module, then reused: a ten-hour timeline
    repeats the same few 36,000 times."""
    yield "time_ms,concept_id,concept_name,value,carried_from_ms\n"
    quoted: dict[str, tuple[str, str]] = {}
    for frame in frames:
        rows = []
        carried = "" if frame.carried_from_ms is None else str(frame.carried_from_ms)
        for c in frame.concepts:
            known = quoted.get(c.id)
            if known is None or known[0] != c.name:
                known = quoted[c.id] = (c.name, _csv_fields(c.id, c.name))
            rows.append(f"{frame.time_ms},{known[1]},{c.value!r},{carried}\n")
        yield "".join(rows)


def _csv_fields(*fields: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()[:-1]
