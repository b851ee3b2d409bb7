"""What a run writes beside timeline.json: segments.json always, and the exports --export picks:
`csv` (frames.csv, segments.csv), `jsonl` (frames.jsonl), `vtt` (segments.vtt, WebVTT cues),
and for editing tools (`output.editors`) `srt` (segments.srt, SubRip cues) and `otio`
(timeline.otio, OpenTimelineIO). Every file is streamed to a temporary file and renamed into
place (atomic)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.output import editors, formats
from pipeline.output.files import atomic_write_json, atomic_write_lines
from pipeline.output.segments import ConceptSegments, Rules, Segment, find_segments, in_time_order
from pipeline.output.timeline import number
from pipeline.types import Frame

EXPORTS = ("csv", "jsonl", "vtt", "srt", "otio")
DEFAULT_EXPORTS = ("csv", "jsonl", "vtt")
# The files each export writes.
EXPORT_FILES = {"csv": ("frames.csv", "segments.csv"), "jsonl": ("frames.jsonl",),
                "vtt": ("segments.vtt",), "srt": ("segments.srt",), "otio": ("timeline.otio",)}
SEGMENTS_JSON = "segments.json"


@dataclass(frozen=True)
class Outputs:
    """Which outputs a run writes, and how segments are made; changing these redoes the
    outputs of a finished video from its saved results, never its predictions."""

    rules: Rules = Rules()
    exports: tuple[str, ...] = DEFAULT_EXPORTS
    report: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.exports) - set(EXPORTS))
        if unknown:
            raise ConfigError(f"--export: unknown export {', '.join(unknown)}")
        # Always in EXPORTS' order, whatever order they were given in.
        object.__setattr__(self, "exports", tuple(e for e in EXPORTS if e in self.exports))

    def as_dict(self, sample_ms: int) -> dict[str, Any]:
        return {"segments": self.rules.as_dict(sample_ms), "exports": list(self.exports),
                "report": self.report}

    def files(self) -> list[str]:
        return [SEGMENTS_JSON, *(f for e in self.exports for f in EXPORT_FILES[e])]


def parse_exports(text: str) -> tuple[str, ...]:
    """"csv,jsonl,vtt,srt,otio" (any order, any subset; "none" or "" for none) as a tuple in
    EXPORTS' order; ValueError naming what is not an export."""
    names = {n.strip().lower() for n in text.split(",") if n.strip()} - {"none"}
    unknown = sorted(names - set(EXPORTS))
    if unknown:
        raise ValueError(f"unknown export {', '.join(unknown)} (choose from {', '.join(EXPORTS)})")
    return tuple(e for e in EXPORTS if e in names)


def write_outputs(root: Path, frames: Sequence[Frame], *, sample_ms: int, duration_ms: int,
                  outputs: Outputs, source: str = "", frame_rate: float | None = None) -> None:
    """segments.json and the chosen exports in `root` (exports not chosen are removed, so none
    is left from other settings); `source` and `frame_rate` place the video in timeline.otio."""
    concepts = find_segments(frames, outputs.rules, sample_ms=sample_ms, duration_ms=duration_ms)
    atomic_write_json(root / SEGMENTS_JSON, segments_dict(
        concepts, outputs.rules, sample_ms=sample_ms, duration_ms=duration_ms,
        frames=len(frames)))
    ordered = in_time_order(concepts)
    writers: dict[str, Callable[[], Iterable[str]]] = {
               "frames.csv": lambda: formats.frames_csv(frames),
               "frames.jsonl": lambda: frames_jsonl(frames),
               "segments.csv": lambda: segments_csv(ordered),
               "segments.vtt": lambda: segments_vtt(ordered),
               "segments.srt": lambda: editors.segments_srt(ordered),
               "timeline.otio": lambda: iter([editors.timeline_otio(
                   concepts, ordered, source=source, duration_ms=duration_ms,
                   frame_rate=frame_rate, about={"sample_ms": sample_ms,
                                                 "rules": outputs.rules.as_dict(sample_ms)})])}
    chosen = set(outputs.files())
    for name, write in writers.items():
        if name in chosen:
            atomic_write_lines(root / name, write())
        else:
            (root / name).unlink(missing_ok=True)


# -- segments.json ---------------------------------------------------------------------------
def segments_dict(concepts: Sequence[ConceptSegments], rules: Rules, *, sample_ms: int,
                  duration_ms: int, frames: int) -> dict[str, Any]:
    return {
        "rules": rules.as_dict(sample_ms), "sample_ms": sample_ms, "duration_ms": duration_ms,
        "frames": frames,
        "concepts": [{"id": c.id, "name": c.name, "total_ms": c.total_ms,
                      "segments": [_segment_dict(s) for s in c.segments]} for c in concepts],
    }


def _segment_dict(s: Segment) -> dict[str, Any]:
    return {"start_ms": s.start_ms, "end_ms": s.end_ms, "duration_ms": s.duration_ms,
            "max_value": round(s.max_value, 6), "mean_value": round(s.mean_value, 6),
            "frames": s.frames}


def segments_from_dict(raw: Mapping[str, Any]) -> list[ConceptSegments]:
    """segments.json's concepts back as values (KeyError/TypeError/ValueError if malformed)."""
    out = []
    for c in raw["concepts"]:
        cid, name = str(c["id"]), str(c["name"])
        out.append(ConceptSegments(cid, name, [
            Segment(cid, name, int(s["start_ms"]), int(s["end_ms"]), float(s["max_value"]),
                    float(s["mean_value"]), int(s["frames"])) for s in c["segments"]]))
    return out


# -- the exports -----------------------------------------------------------------------------
def frames_jsonl(frames: Iterable[Frame]) -> Iterator[str]:
    """One JSON object a line: {"index", "time_ms", "concepts": [{"id", "name", "value"}]},
    with "carried_from_ms" before "concepts" for a frame that was not sent (--skip-similar),
    as json.dumps writes it, with each concept's id and name encoded once."""
    encoded: dict[str, tuple[str, str]] = {}
    for index, frame in enumerate(frames):
        parts = []
        for c in frame.concepts:
            known = encoded.get(c.id)
            if known is None or known[0] != c.name:
                cid, name = (json.dumps(x, ensure_ascii=False) for x in (c.id, c.name))
                known = encoded[c.id] = (c.name, f'{{"id": {cid}, "name": {name}, "value": ')
            parts.append(known[1] + number(c.value) + "}")
        concepts = ", ".join(parts)
        carried = "" if frame.carried_from_ms is None else \
            f'"carried_from_ms": {frame.carried_from_ms}, '
        yield (f'{{"index": {index}, "time_ms": {frame.time_ms}, {carried}'
               f'"concepts": [{concepts}]}}\n')


SEGMENT_COLUMNS = ("concept_id", "concept_name", "start_ms", "end_ms", "duration_ms",
                   "max_value", "mean_value", "frames")


def segments_csv(segments: Iterable[Segment]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEGMENT_COLUMNS)
    for s in segments:
        writer.writerow([s.concept_id, s.concept_name, s.start_ms, s.end_ms, s.duration_ms,
                         round(s.max_value, 6), round(s.mean_value, 6), s.frames])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def segments_vtt(segments: Iterable[Segment]) -> Iterator[str]:
    """WebVTT: one cue per segment, in start order, reading "sfw (max 0.99)"."""
    yield "WEBVTT\n\n"
    for cue, s in enumerate(segments, 1):
        yield (f"{cue}\n{vtt_time(s.start_ms)} --> {vtt_time(s.end_ms)}\n"
               f"{vtt_text(s.concept_name)} (max {s.max_value:.2f})\n\n")


def vtt_time(ms: int) -> str:
    """hh:mm:ss.ttt (hours grow past two digits if need be)."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def vtt_text(text: str) -> str:
    """Cue text with WebVTT's markup characters escaped (no "-->", no tag, no line break)."""
    text = " ".join(text.split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
