"""--export srt and otio: segments.srt read by ffmpeg's SRT demuxer and by the `srt` library,
timeline.otio read by OpenTimelineIO (markers at the segments' times on the source's clock)
and turned into a CMX 3600 EDL by its adapter; written again from saved results on a rerun,
byte for byte what a fresh run writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest
import srt
from test_run import cli, only_video_dir

from pipeline.output import editors
from pipeline.output.exports import Outputs, write_outputs
from pipeline.output.segments import Rules, Segment, find_segments, in_time_order
from pipeline.types import Concept, Frame

pytestmark = pytest.mark.integration

MAX_BYTES = "400000"
NASTY = ["a & b", "x<y>z", "arrow --> here", "ünïcödé 日本", "two\nlines", "{\\an8}tag"]


def pattern(names: Sequence[str], count: int = 24) -> list[Frame]:
    """Frames every 500 ms whose concepts come and go at different paces: many segments."""
    return [Frame(250 + 500 * i, tuple(
        Concept(f"id{j}", name, 0.9 if (i // (2 + j)) % 2 == 0 else 0.1)
        for j, name in enumerate(names))) for i in range(count)]


def segments_of(frames: list[Frame], duration_ms: int) -> list[Segment]:
    return in_time_order(find_segments(frames, Rules(), sample_ms=500, duration_ms=duration_ms))


def write(folder: Path, frames: list[Frame], *, source: str, frame_rate: float | None,
          duration_ms: int = 12_000) -> None:
    write_outputs(folder, frames, sample_ms=500, duration_ms=duration_ms,
                  outputs=Outputs(exports=("srt", "otio")), source=source,
                  frame_rate=frame_rate)


def ffmpeg_cues(path: Path) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each subtitle packet ffmpeg's SRT demuxer reads."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-f", "srt", "-i", str(path),
                            "-show_packets", "-show_data", "-of", "json"],
                           capture_output=True, text=True, check=True)
    packets = json.loads(probe.stdout).get("packets", [])
    return [(round(float(p["pts_time"]) * 1000),
             round((float(p["pts_time"]) + float(p["duration_time"])) * 1000),
             _hexdump_text(p["data"])) for p in packets]


def _hexdump_text(dump: str) -> str:
    """The bytes of ffprobe's -show_data hex dump, as text."""
    # "00000000: 7366 7720 ...  sfw ...": eight groups of hex in 40 columns, then the text.
    data = bytes.fromhex("".join(line.split(":", 1)[1][1:41].replace(" ", "")
                                 for line in dump.strip().splitlines()))
    return data.decode("utf-8")


def markers_ms(timeline: Any) -> list[tuple[str, int, int, dict[str, Any]]]:
    (clip,) = timeline.find_clips()
    return [(m.name, round(m.marked_range.start_time.to_seconds() * 1000),
             round(m.marked_range.end_time_exclusive().to_seconds() * 1000),
             dict(m.metadata["video_pipeline"])) for m in clip.markers]


def test_segments_srt_is_one_cue_per_segment_for_ffmpeg_and_the_srt_library(
        tmp_path: Path) -> None:
    """ffmpeg's SRT demuxer reads one packet per segment, at its start and end, reading
    "name (max 0.90)"; the srt library parses the same cues."""
    frames = pattern(["cat", "dog", "bird"])
    write(tmp_path, frames, source="v.mp4", frame_rate=25.0)
    segments = segments_of(frames, 12_000)
    assert len(segments) >= 8
    expected = [(s.start_ms, s.end_ms, f"{s.concept_name} (max {s.max_value:.2f})")
                for s in segments]
    assert ffmpeg_cues(tmp_path / "segments.srt") == expected
    parsed = list(srt.parse((tmp_path / "segments.srt").read_text(encoding="utf-8")))
    assert [(c.index, c.start.total_seconds() * 1000, c.end.total_seconds() * 1000, c.content)
            for c in parsed] == [(n, *e) for n, e in enumerate(expected, 1)]


def test_timeline_otio_has_the_source_as_a_clip_and_a_marker_per_segment(
        tmp_path: Path) -> None:
    """OpenTimelineIO reads one track with the source as one clip (an external reference to
    its file, 0 to its duration, on a 25 fps clock) and one marker per segment, named by its
    concept, at the segment's times, its values in the marker's metadata."""
    frames = pattern(["cat", "dog", "bird"])
    write(tmp_path, frames, source="/media/my clips/v.mp4", frame_rate=24.975)
    timeline = otio.adapters.read_from_file(str(tmp_path / "timeline.otio"))
    (track,) = timeline.tracks
    (clip,) = track
    assert clip.media_reference.target_url == "file:///media/my%20clips/v.mp4"
    whole = clip.media_reference.available_range
    assert (whole.start_time.value, whole.duration.value, whole.duration.rate) == (0, 300, 25)
    assert clip.source_range == whole
    found = markers_ms(timeline)
    segments = segments_of(frames, 12_000)
    assert [(n, a, b) for n, a, b, _ in found] == [
        (s.concept_name, s.start_ms, s.end_ms) for s in segments]
    assert [v["max_value"] for *_, v in found] == [round(s.max_value, 6) for s in segments]
    assert {m.color for m in clip.markers} == {"RED", "GREEN", "BLUE"}
    assert timeline.metadata["video_pipeline"]["sample_ms"] == 500


def test_the_clock_is_the_videos_smpte_rate_or_milliseconds() -> None:
    """25 and a measured 24.975 give 25, NTSC's 29.97 gives 30000/1001; no rate, or one far
    from any SMPTE rate (7.5), gives a millisecond clock (1000)."""
    assert editors.clock_rate(25.0) == editors.clock_rate(24.975) == 25
    assert editors.clock_rate(29.97003) == pytest.approx(30000 / 1001)
    assert editors.clock_rate(None) == editors.clock_rate(7.5) == editors.MS_RATE


def test_timeline_otio_becomes_a_cmx_3600_edl_with_its_adapter(tmp_path: Path) -> None:
    """OpenTimelineIO's CMX 3600 adapter writes an EDL of the clip with one locator per
    segment (a 30000/1001 clock, rescaled to the EDL's 30)."""
    frames = pattern(["cat", "dog"])
    write(tmp_path, frames, source="/media/v.mp4", frame_rate=29.97)
    timeline = otio.adapters.read_from_file(str(tmp_path / "timeline.otio"))
    edl = otio.adapters.write_to_string(timeline, "cmx_3600", rate=30)
    locators = [line for line in edl.splitlines() if line.startswith("* LOC:")]
    assert len(locators) == len(segments_of(frames, 12_000)) >= 4
    assert "001  " in edl and "00:00:12:00" in edl


def test_awkward_names_survive_srt_and_otio(tmp_path: Path) -> None:
    """Names with markup, arrows, line breaks and non-ASCII: each segment is still one cue for
    ffmpeg and the srt library (on one line, with no "-->"), and its exact name in OTIO."""
    frames = pattern(NASTY, count=12)
    write(tmp_path, frames, source="v.mp4", frame_rate=None, duration_ms=6000)
    segments = segments_of(frames, 6000)
    cues = ffmpeg_cues(tmp_path / "segments.srt")
    assert len(cues) == len(segments) == len(list(srt.parse(
        (tmp_path / "segments.srt").read_text(encoding="utf-8"))))
    assert all("-->" not in text and "\n" not in text for *_, text in cues)
    timeline = otio.adapters.read_from_file(str(tmp_path / "timeline.otio"))
    assert [n for n, *_ in markers_ms(timeline)] == [s.concept_name for s in segments]


def test_an_empty_timeline_gives_no_cue_and_no_marker(tmp_path: Path) -> None:
    """No frames: segments.srt holds no cue, timeline.otio the clip alone."""
    write(tmp_path, [], source="v.mp4", frame_rate=25.0, duration_ms=0)
    assert (tmp_path / "segments.srt").read_text() == ""
    timeline = otio.adapters.read_from_file(str(tmp_path / "timeline.otio"))
    (clip,) = timeline.find_clips()
    assert list(clip.markers) == [] and clip.media_reference.target_url == "v.mp4"


@pytest.fixture(scope="module")
def done_run(vbr_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with the default exports (no srt, no otio)."""
    out = tmp_path_factory.mktemp("editors")
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES)
    assert done.returncode == 0, done.stderr
    return out


def test_a_rerun_with_srt_and_otio_writes_them_from_saved_results(
        done_run: Path, vbr_video: Path, tmp_path: Path) -> None:
    """--export srt,otio on a finished video sends nothing and writes segments.srt and
    timeline.otio, byte for byte what a fresh run with those exports writes; their cues and
    markers are segments.json's segments on the video's 30 fps clock."""
    out = tmp_path / "out"
    shutil.copytree(done_run, out)
    again = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES,
                "--export", "srt,otio")
    assert again.returncode == 0, again.stderr
    (entry,) = json.loads((out / "summary.json").read_text())["inputs"]
    assert entry["requests"] == 0 and "outputs rewritten" in entry["note"]
    fresh = tmp_path / "fresh"
    first = cli("run", str(vbr_video), "--out", str(fresh), "--max-bytes", MAX_BYTES,
                "--export", "otio,srt")
    assert first.returncode == 0, first.stderr
    vdir, fresh_dir = only_video_dir(out), only_video_dir(fresh)
    for name in ("segments.srt", "timeline.otio"):
        assert (vdir / name).read_bytes() == (fresh_dir / name).read_bytes(), name
    assert not (vdir / "segments.vtt").exists()
    saved = json.loads((vdir / "segments.json").read_text())
    expected = sorted((s["start_ms"], c["name"], s["end_ms"])
                      for c in saved["concepts"] for s in c["segments"])
    assert [(a, text.split(" (")[0], b) for a, b, text in
            ffmpeg_cues(vdir / "segments.srt")] == expected
    timeline = otio.adapters.read_from_file(str(vdir / "timeline.otio"))
    assert [(a, n, b) for n, a, b, _ in markers_ms(timeline)] == expected
    (clip,) = timeline.find_clips()
    assert clip.media_reference.available_range.duration.rate == 30
    assert clip.media_reference.target_url == "file://" + str(vbr_video)
