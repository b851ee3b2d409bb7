"""What a run leaves: segments.json and the exports, parsed back with the standard library (and
the VTT with a real WebVTT parser); timeline.json streamed in its exact format; outputs made
again from the saved results when their settings change, sending nothing."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st
from test_run import cli, only_video_dir

from pipeline.output import exports, formats, timeline
from pipeline.output.exports import Outputs, write_outputs
from pipeline.output.files import atomic_write_lines
from pipeline.output.segments import Rules, Segment, find_segments
from pipeline.types import Concept, Frame

pytestmark = pytest.mark.integration

MAX_BYTES = "400000"  # the 30 s video in several chunks


@pytest.fixture(scope="module")
def results(vbr_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES)
    assert done.returncode == 0, done.stderr
    return only_video_dir(out)


def timeline_frames(vdir: Path) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads((vdir / "timeline.json").read_text())["frames"]
    return frames


def test_a_run_writes_segments_and_every_export(results: Path) -> None:
    """Default --export: frames.csv, frames.jsonl, segments.csv, segments.vtt, with
    segments.json; the segment rules applied are written down."""
    names = {p.name for p in results.iterdir()}
    assert {"timeline.json", "segments.json", "frames.csv", "frames.jsonl", "segments.csv",
            "segments.vtt"} <= names
    saved = json.loads((results / "segments.json").read_text())
    assert saved["rules"] == {"min_confidence": 0.5, "max_gap_ms": 1000, "min_segment_ms": 0}
    assert saved["frames"] == 30 and saved["duration_ms"] == 30_000


def test_frames_exports_parse_back_to_the_timeline(results: Path) -> None:
    """frames.csv (csv module) and frames.jsonl (json module) hold the timeline's values."""
    expected = [(f["frame_info"]["time"], c["id"], c["name"], c["value"])
                for f in timeline_frames(results) for c in f["data"]["concepts"]]
    rows = list(csv.DictReader((results / "frames.csv").open(encoding="utf-8")))
    assert [(int(r["time_ms"]), r["concept_id"], r["concept_name"], float(r["value"]))
            for r in rows] == expected
    lines = (results / "frames.jsonl").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["index"] for o in objects] == list(range(30))
    assert [(o["time_ms"], c["id"], c["name"], c["value"])
            for o in objects for c in o["concepts"]] == expected


def test_segments_exports_agree_with_segments_json(results: Path) -> None:
    """segments.csv rows and segments.vtt cues (read by webvtt-py) are segments.json's
    segments, in time order."""
    saved = json.loads((results / "segments.json").read_text())
    expected = sorted((s["start_ms"], c["name"], s["end_ms"], s["max_value"])
                       for c in saved["concepts"] for s in c["segments"])
    assert expected, "the video has at least one segment"
    rows = list(csv.DictReader((results / "segments.csv").open(encoding="utf-8")))
    assert [(int(r["start_ms"]), r["concept_name"], int(r["end_ms"]), float(r["max_value"]))
            for r in rows] == expected
    assert all(int(r["duration_ms"]) == int(r["end_ms"]) - int(r["start_ms"]) for r in rows)
    cues = webvtt.read(str(results / "segments.vtt")).captions
    assert [(c.start_time.in_milliseconds(), c.text.split(" (")[0],
             c.end_time.in_milliseconds()) for c in cues] == [e[:3] for e in expected]


def test_segments_match_the_timeline_and_span_chunk_boundaries(results: Path) -> None:
    """segments.json is what the finder gives over timeline.json's frames, and some segment
    runs over a chunk boundary without being split there."""
    head = timeline.read_head(results / "timeline.json")
    found = find_segments(timeline.read_frames(results / "timeline.json"), Rules(),
                          sample_ms=1000, duration_ms=head["source"]["duration_ms"])
    saved = json.loads((results / "segments.json").read_text())
    assert exports.segments_dict(found, Rules(), sample_ms=1000, duration_ms=30_000,
                                 frames=30) == saved
    boundaries = [c["start_ms"] for c in head["chunks"][1:]]
    segments = [s for c in found for s in c.segments]
    assert any(s.start_ms < b < s.end_ms for s in segments for b in boundaries)


def test_a_rerun_with_other_output_settings_rewrites_outputs_without_sending(
        results: Path, vbr_video: Path, tmp_path: Path) -> None:
    """--min-confidence and --export changed: the video is not redone (no request, the same
    timeline.json), its outputs are; exports not asked for go. A third run skips it."""
    out = tmp_path / "out"
    shutil.copytree(results.parent, out)
    vdir = out / results.name
    before = (vdir / "timeline.json").read_bytes()
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES,
               "--export", "vtt", env={"VIDEO_PIPELINE_MIN_CONFIDENCE": "0.99"})
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads((out / "summary.json").read_text())["inputs"]
    assert entry["status"] == "skipped" and entry["requests"] == 0
    assert "outputs rewritten" in entry["note"]
    assert (vdir / "timeline.json").read_bytes() == before
    assert json.loads((vdir / "segments.json").read_text())["rules"]["min_confidence"] == 0.99
    assert (vdir / "segments.vtt").exists()
    assert not any((vdir / n).exists() for n in ("frames.csv", "frames.jsonl", "segments.csv"))
    stamp = (vdir / "segments.json").stat().st_mtime_ns
    again = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES,
                "--export", "vtt", "--min-confidence", "0.99")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["inputs"][0]["note"] == "already done"
    assert (vdir / "segments.json").stat().st_mtime_ns == stamp


def test_outputs_are_made_again_from_timeline_json_when_the_checkpoints_are_gone(
        results: Path, vbr_video: Path, tmp_path: Path) -> None:
    """results/ deleted and every output removed: a rerun writes them byte for byte as the
    first run did, from timeline.json, sending nothing."""
    out = tmp_path / "out"
    shutil.copytree(results.parent, out)
    vdir = out / results.name
    shutil.rmtree(vdir / "results")
    names = ["segments.json", "frames.csv", "frames.jsonl", "segments.csv", "segments.vtt"]
    for name in [*names, "outputs.json"]:
        (vdir / name).unlink()
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["inputs"][0]["requests"] == 0
    for name in names:
        assert (vdir / name).read_bytes() == (results / name).read_bytes(), name


def test_export_names_are_checked() -> None:
    """--export takes csv, jsonl, vtt in any order and case, or none; anything else is a
    configuration error naming the flag (exit 2)."""
    assert exports.parse_exports("VTT, csv") == ("csv", "vtt")
    assert exports.parse_exports("none") == () == exports.parse_exports("")
    done = cli("run", "nothing.mp4", "--out", "/tmp/never", "--export", "csv,edl")
    assert done.returncode == 2 and "--export" in done.stderr and "edl" in done.stderr
    done = cli("run", "nothing.mp4", "--out", "/tmp/never", "--min-confidence", "1.5")
    assert done.returncode == 2 and "--min-confidence" in done.stderr


NASTY = ["a & b", "x<y>z", "arrow --> here", "comma, \"quoted\"", "ünïcödé 日本", "two\nlines"]


def test_awkward_concept_names_survive_every_export(tmp_path: Path) -> None:
    """Names with markup, commas, quotes, arrows, line breaks and non-ASCII parse back: the
    CSVs with csv, the JSON Lines with json, the cues with webvtt-py (text escaped)."""
    timeline_ = [Frame(500 + 1000 * i, tuple(Concept(f"id{j}", n, 0.9 if i % 3 else 0.2)
                                             for j, n in enumerate(NASTY))) for i in range(7)]
    write_outputs(tmp_path, timeline_, sample_ms=1000, duration_ms=7000, outputs=Outputs())
    rows = list(csv.DictReader((tmp_path / "segments.csv").open(encoding="utf-8")))
    assert {r["concept_name"] for r in rows} == set(NASTY)
    lines = (tmp_path / "frames.jsonl").read_text(encoding="utf-8").splitlines()
    assert [c["name"] for c in json.loads(lines[0])["concepts"]] == NASTY
    cues = webvtt.read(str(tmp_path / "segments.vtt")).captions
    assert len(cues) == len(rows) == len(NASTY)  # the one low frame in the middle is bridged
    assert {c.text.rsplit(" (", 1)[0] for c in cues} == {
        " ".join(n.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for n in NASTY}


def test_vtt_times_past_a_hundred_hours() -> None:
    assert exports.vtt_time(0) == "00:00:00.000"
    assert exports.vtt_time(3_723_004) == "01:02:03.004"
    assert exports.vtt_time(360_000_000) == "100:00:00.000"
    cue = "".join(exports.segments_vtt([Segment("c", "cat", 3_600_000, 360_000_500, 1, 1, 2)]))
    (caption,) = webvtt.from_string(cue).captions
    assert caption.end_time.in_milliseconds() == 360_000_500


values = st.floats(min_value=0, max_value=1, allow_nan=False)
names = st.text(min_size=0, max_size=8)
concepts = st.lists(st.tuples(names, names, values), max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.lists(concepts, max_size=6), st.dictionaries(names, st.integers(), max_size=3))
def test_timeline_json_streams_exactly_what_json_dumps_writes(
        rows: list[list[tuple[str, str, float]]], extra: dict[str, int]) -> None:
    """The streamed timeline.json equals json.dumps(indent=2, ensure_ascii=False) of the whole
    dict, byte for byte, and reads back as the same frames."""
    frames = [Frame(500 + 1000 * i, tuple(Concept(*c) for c in row))
              for i, row in enumerate(rows)]
    head = {"source": {"path": "v.mp4", "duration_ms": 6000}, "chunks": [{"frames": 3}]}
    tail = {"run_key": extra}
    whole = {**head, "frames": [formats.frame_dict(i, f) for i, f in enumerate(frames)], **tail}
    text = "".join(timeline.pieces(head, frames, tail))
    assert text == json.dumps(whole, indent=2, ensure_ascii=False) + "\n"
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "timeline.json"
        path.write_text(text, encoding="utf-8")
        assert list(timeline.read_frames(path)) == frames
        assert timeline.read_head(path) == head
        assert timeline.read_key(path, "run_key") == extra


@settings(max_examples=60, deadline=None)
@given(st.lists(concepts, max_size=6))
def test_frame_exports_write_what_csv_and_json_would(
        rows: list[list[tuple[str, str, float]]]) -> None:
    """frames.csv is csv.writer's text, and each frames.jsonl line json.dumps', byte for byte
    (the fast writers reuse each concept's encoded id and name)."""
    frames = [Frame(500 + 1000 * i, tuple(Concept(*c) for c in row))
              for i, row in enumerate(rows)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time_ms", "concept_id", "concept_name", "value", "carried_from_ms"])
    writer.writerows([f.time_ms, *c, ""] for f in frames for c in f.concepts)
    assert "".join(formats.frames_csv(frames)) == buf.getvalue()
    assert "".join(exports.frames_jsonl(frames)) == "".join(
        json.dumps({"index": i, "time_ms": f.time_ms, "concepts": [
            {"id": c.id, "name": c.name, "value": c.value} for c in f.concepts]},
            ensure_ascii=False) + "\n" for i, f in enumerate(frames))


def test_writing_outputs_streams_frames_without_copies(tmp_path: Path) -> None:
    """3,000 frames x 20 concepts (a 6 MB timeline.json, 4 MB of frames.csv): writing the
    timeline and every export (13 MB of files) allocates under 2 MB at a time beyond the frames:
    what is held is the segments (here 20 concepts coming and going every minute, 614)."""
    timeline_ = [Frame(500 + 1000 * i, tuple(
        Concept(f"id{j}", f"concept {j}", 0.2 + 0.7 * ((i // (40 + j)) % 2) + i % 7 / 100)
        for j in range(20))) for i in range(3000)]
    head = {"source": {"path": "v.mp4", "duration_ms": 3_000_000}}
    tracemalloc.start()
    try:
        write_outputs(tmp_path, timeline_, sample_ms=1000, duration_ms=3_000_000,
                      outputs=Outputs())
        atomic_write_lines(tmp_path / "timeline.json", timeline.pieces(head, timeline_, {}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) > 12_000_000
    assert peak < 2_000_000, peak


def test_run_report_writes_each_video_page_from_the_saved_results(
        results: Path, vbr_video: Path, tmp_path: Path) -> None:
    """A rerun with --report adds report.html to a finished video, sending nothing; the page
    lists the run's segments."""
    out = tmp_path / "out"
    shutil.copytree(results.parent, out)
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", MAX_BYTES, "--report")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["inputs"][0]["requests"] == 0
    page = (out / results.name / "report.html").read_text(encoding="utf-8")
    count = sum(len(c["segments"]) for c in json.loads(
        (results / "segments.json").read_text())["concepts"])
    assert f"{count:,} segment" in page and "data:image/png;base64," in page


def test_an_empty_timeline_gives_empty_exports(tmp_path: Path) -> None:
    """No frames: segments.json lists no concept, the CSVs have their header only, the VTT no
    cue (and still parses)."""
    write_outputs(tmp_path, [], sample_ms=1000, duration_ms=0, outputs=Outputs())
    saved = json.loads((tmp_path / "segments.json").read_text())
    assert saved["concepts"] == [] and saved["frames"] == 0
    assert (tmp_path / "frames.csv").read_text() == \
        "time_ms,concept_id,concept_name,value,carried_from_ms\n"
    assert list(csv.DictReader((tmp_path / "segments.csv").open())) == []
    assert (tmp_path / "frames.jsonl").read_text() == ""
    assert webvtt.read(str(tmp_path / "segments.vtt")).captions == []
