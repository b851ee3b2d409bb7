"""Exports editing tools open: `srt` (segments.srt, SubRip cues) and `otio` (timeline.otio,
OpenTimelineIO), written with the field's own libraries (`srt`, `opentimelineio`).

timeline.otio holds one track with the source as one clip on its own clock: an external
reference to the file (its path as the run was given it, as a URL: a relative path stays
relative, for the editor to relink), its available range from 0 (the source's first frame, as
in timeline.json) to its duration, and one marker per segment, named by its concept, its
values in the marker's metadata under "video_pipeline". The clock's rate is the video's frame
rate when it is within 0.5% of a SMPTE rate (so editors and EDLs show proper timecode), else
1000 (milliseconds). OpenTimelineIO's adapters turn it into what other tools read:
`otioconvert -i timeline.otio -o cut.edl` (CMX 3600, with the otio-cmx3600-adapter package),
FCP XML (otio-fcp-adapter), and others."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from pipeline.output.segments import ConceptSegments, Segment

if TYPE_CHECKING:
    import opentimelineio as otio

MS_RATE = 1000.0
_SMPTE_SLACK = 0.005  # a measured average rate (24.975 for 25) is still its SMPTE rate
NAMESPACE = "video_pipeline"


# -- segments.srt ------------------------------------------------------------------------------
def segments_srt(segments: Iterable[Segment]) -> Iterator[str]:
    """SubRip: one cue per segment, in start order, reading "sfw (max 0.99)"."""
    import datetime

    import srt
    cues = [srt.Subtitle(n, datetime.timedelta(milliseconds=s.start_ms),
                         datetime.timedelta(milliseconds=s.end_ms),
                         f"{srt_text(s.concept_name)} (max {s.max_value:.2f})")
            for n, s in enumerate(segments, 1)]
    yield srt.compose(cues, reindex=False)


def srt_text(text: str) -> str:
    """Cue text on one line, with no "-->" a reader could take for a timing line."""
    return " ".join(text.split()).replace("-->", "->")


# -- timeline.otio -----------------------------------------------------------------------------
def clock_rate(frame_rate: float | None) -> float:
    """The rate of timeline.otio's times: the SMPTE rate the video's frame rate is, or 1000."""
    import opentimelineio as otio
    if not frame_rate or frame_rate <= 0:
        return MS_RATE
    nearest = float(otio.opentime.RationalTime.nearest_smpte_timecode_rate(frame_rate))
    return nearest if abs(nearest - frame_rate) <= _SMPTE_SLACK * frame_rate else MS_RATE


def media_url(path: str) -> str:
    """The source as a URL reference: a URL as it is, an absolute path as file://, a relative
    path as a relative reference (percent-encoded either way)."""
    if urlsplit(path).scheme.lower() in ("http", "https", "s3"):
        return path
    if os.path.isabs(path):
        return "file://" + quote(path)
    return quote(path)


def timeline_otio(concepts: Sequence[ConceptSegments], ordered: Sequence[Segment], *,
                  source: str, duration_ms: int, frame_rate: float | None,
                  about: dict[str, Any]) -> str:
    """timeline.otio's text (OpenTimelineIO's JSON), `about` kept in the timeline's metadata."""
    import opentimelineio as otio
    rate = clock_rate(frame_rate)
    name = os.path.basename(source.rstrip("/")) or source
    whole = _range(0, duration_ms, rate)
    clip = otio.schema.Clip(name=name, source_range=whole, media_reference=(
        otio.schema.ExternalReference(target_url=media_url(source), available_range=whole)))
    colours = _colours([c.id for c in concepts])
    for s in ordered:
        clip.markers.append(otio.schema.Marker(
            name=s.concept_name, marked_range=_range(s.start_ms, s.end_ms, rate),
            color=colours[s.concept_id], metadata={NAMESPACE: _values(s)}))
    track = otio.schema.Track(name="video", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name=name, metadata={NAMESPACE: {
        **about, "duration_ms": duration_ms, "frame_rate": frame_rate, "rate": rate}})
    timeline.tracks.append(track)
    text: str = otio.adapters.write_to_string(timeline, "otio_json")
    return text + "\n"


def _range(start_ms: int, end_ms: int, rate: float) -> otio.opentime.TimeRange:
    import opentimelineio as otio
    time = otio.opentime.RationalTime
    return otio.opentime.TimeRange(time(start_ms * rate / 1000, rate),
                                   time((end_ms - start_ms) * rate / 1000, rate))


def _values(s: Segment) -> dict[str, Any]:
    return {"concept_id": s.concept_id, "concept_name": s.concept_name,
            "start_ms": s.start_ms, "end_ms": s.end_ms, "max_value": round(s.max_value, 6),
            "mean_value": round(s.mean_value, 6), "frames": s.frames}


def _colours(concept_ids: Sequence[str]) -> dict[str, str]:
    """A marker colour per concept, in the order concepts first appear."""
    import opentimelineio as otio
    palette = [otio.schema.MarkerColor.RED, otio.schema.MarkerColor.GREEN,
               otio.schema.MarkerColor.BLUE, otio.schema.MarkerColor.YELLOW,
               otio.schema.MarkerColor.CYAN, otio.schema.MarkerColor.MAGENTA,
               otio.schema.MarkerColor.ORANGE, otio.schema.MarkerColor.PURPLE,
               otio.schema.MarkerColor.PINK]
    return {cid: palette[i % len(palette)] for i, cid in enumerate(concept_ids)}
