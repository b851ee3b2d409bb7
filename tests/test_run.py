"""The main job end to end through the command line, on the embedded model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import ffmpeg

pytestmark = pytest.mark.integration

SRC = str(Path(__file__).resolve().parent.parent)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, cwd=SRC, env={**os.environ, **(env or {})}, timeout=600)


def only_video_dir(out: Path) -> Path:
    (vdir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return vdir


@pytest.fixture(scope="module")
def first_run(vbr_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", "400000")
    assert done.returncode == 0, done.stderr
    return out


def test_run_writes_one_continuous_timeline(first_run: Path) -> None:
    """30 s at 1 frame/s: 30 frames at 500, 1500, ... 29500 ms, indices 0..29, across chunks."""
    timeline = json.loads((only_video_dir(first_run) / "timeline.json").read_text())
    assert len(timeline["chunks"]) >= 4
    times = [f["frame_info"]["time"] for f in timeline["frames"]]
    assert times == list(range(500, 30_000, 1000))
    assert [f["frame_info"]["index"] for f in timeline["frames"]] == list(range(30))
    names = {c["name"] for f in timeline["frames"] for c in f["data"]["concepts"]}
    assert names == {"sfw", "nsfw"}
    assert timeline["backend"] == "local" and timeline["sample_ms"] == 1000
    assert timeline["limits"] == {"mode": "bytes", "max_bytes": 400000,
                                  "max_duration_ms": 600000}
    assert all(c["size_bytes"] <= 400000 for c in timeline["chunks"])
    starts = [c["start_ms"] for c in timeline["chunks"]]
    assert starts[0] == 0 and starts == sorted(starts)


def test_frames_csv_and_summary_agree_with_the_timeline(first_run: Path) -> None:
    """frames.csv has a row per frame and concept; summary.json says done."""
    vdir = only_video_dir(first_run)
    rows = list(csv.DictReader((vdir / "frames.csv").open()))
    assert len(rows) == 30 * 2
    assert rows[0].keys() == {"time_ms", "concept_id", "concept_name", "value",
                              "carried_from_ms"}
    assert {r["carried_from_ms"] for r in rows} == {""}  # every frame sent
    summary = json.loads((first_run / "summary.json").read_text())
    (entry,) = summary["inputs"]
    assert entry["status"] == "done" and entry["id"] == vdir.name and entry["error"] is None


def test_rerun_skips_a_finished_video(first_run: Path, vbr_video: Path) -> None:
    """Same inputs, same --out: nothing redone, summary says skipped, exit 0."""
    before = (only_video_dir(first_run) / "timeline.json").stat().st_mtime_ns
    done = cli("run", str(vbr_video), "--out", str(first_run), "--max-bytes", "400000")
    assert done.returncode == 0, done.stderr
    assert (only_video_dir(first_run) / "timeline.json").stat().st_mtime_ns == before
    assert json.loads((first_run / "summary.json").read_text())["inputs"][0]["status"] == "skipped"


def test_an_interrupted_run_resumes_without_redoing_finished_chunks(
        first_run: Path, vbr_video: Path, tmp_path: Path) -> None:
    """Copy the finished output, drop the timeline and half the checkpoints (as a crash would
    leave it): the rerun predicts only the missing chunks and gives the same timeline."""
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(first_run), str(out)], check=True)
    vdir = only_video_dir(out)
    expected = json.loads((vdir / "timeline.json").read_text())
    (vdir / "timeline.json").unlink()
    results = sorted((vdir / "results").iterdir())
    for path in results[::2]:
        path.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in results[1::2]}
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", "400000")
    assert done.returncode == 0, done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in results[1::2]} == kept
    assert all(p.exists() for p in results)
    got = json.loads((vdir / "timeline.json").read_text())
    assert got["frames"] == expected["frames"] and got["chunks"] == expected["chunks"]


def test_force_redoes_a_finished_video(first_run: Path, vbr_video: Path, tmp_path: Path) -> None:
    """--force predicts again even though the timeline exists."""
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(first_run), str(out)], check=True)
    before = (only_video_dir(out) / "timeline.json").stat().st_mtime_ns
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", "400000", "--force")
    assert done.returncode == 0, done.stderr
    assert (only_video_dir(out) / "timeline.json").stat().st_mtime_ns != before


def test_bad_inputs_fail_alone_with_one_line_each(bad_inputs: dict[str, Path],
                                                  small_video: Path, tmp_path: Path) -> None:
    """Missing, empty, text, truncated, audio-only and a folder without videos each fail with a
    one-line reason and no traceback; the good input (named with spaces and non-ASCII) is done;
    exit code 1."""
    odd_name = tmp_path / "my vidéo ñ.mp4"
    odd_name.write_bytes(small_video.read_bytes())
    out = tmp_path / "out"
    done = cli("run", *map(str, bad_inputs.values()), str(odd_name), "--out", str(out))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    by_source = {e["source"]: e for e in summary["inputs"]}
    assert by_source[str(odd_name)]["status"] == "done"
    reasons = {
        "missing": "file not found", "empty": "empty", "text": "not a readable video",
        "truncated": "truncated", "audio": "no video stream (audio only)",
        "empty_dir": "no video files",
    }
    for key, reason in reasons.items():
        entry = by_source[str(bad_inputs[key])]
        assert entry["status"] == "failed" and reason in entry["error"], entry
        error_lines = [ln for ln in done.stderr.splitlines() if str(bad_inputs[key]) in ln]
        assert len(error_lines) == 1 and reason in error_lines[0]
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 6}


@pytest.mark.parametrize("flags", [["--max-bytes", "-5"], ["--sample-ms", "0"],
                                   ["--max-seconds", "0"], ["--concurrency", "0"],
                                   ["--mode", "carrier-pigeon"], ["--max-bytes", "lots"]])
def test_bad_flags_exit_2_before_processing(flags: list[str], small_video: Path,
                                            tmp_path: Path) -> None:
    """A bad flag is a usage error: exit 2, a message, nothing written."""
    done = cli("run", str(small_video), "--out", str(tmp_path / "out"), *flags)
    assert done.returncode == 2
    assert "error" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_local_model_lists_what_is_available(small_video: Path, tmp_path: Path) -> None:
    """The local backend has no 'food' model: exit 2 and the message names 'nsfw'."""
    done = cli("run", str(small_video), "--out", str(tmp_path / "o"), "--model", "food")
    assert done.returncode == 2
    assert "'food' is not available" in done.stderr and "nsfw" in done.stderr


def test_options_can_come_from_the_environment(small_video: Path, tmp_path: Path) -> None:
    """VIDEO_PIPELINE_SAMPLE_MS=2000 halves the frames of an 8 s video."""
    out = tmp_path / "o"
    done = cli("run", str(small_video), "--out", str(out),
               env={"VIDEO_PIPELINE_SAMPLE_MS": "2000"})
    assert done.returncode == 0, done.stderr
    timeline = json.loads((only_video_dir(out) / "timeline.json").read_text())
    assert [f["frame_info"]["time"] for f in timeline["frames"]] == [1000, 3000, 5000, 7000]


def test_video_id_is_stable_and_differs_for_different_content(
        small_video: Path, vbr_video: Path, tmp_path: Path) -> None:
    """The same bytes under two names share the stem-free part; different bytes under one name
    get different ids."""
    from pipeline.batch.identity import video_id
    a, b = tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(small_video.read_bytes())
    ffmpeg("-i", str(vbr_video), "-t", "2", "-c", "copy", str(b))
    assert video_id(str(a)) == video_id(str(a))
    assert video_id(str(a)) != video_id(str(b))
    assert video_id(str(a)).split("-")[-1] == video_id(str(small_video)).split("-")[-1]


def test_a_run_of_an_mp4_cuts_it_in_memory(vbr_video: Path, tmp_path: Path) -> None:
    """No scratch copy of the video: chunks.json describes each chunk as the source's samples,
    and no chunk file is left (or made) in the output folder."""
    out = tmp_path / "out"
    done = cli("run", str(vbr_video), "--out", str(out), "--max-bytes", "400000")
    assert done.returncode == 0, done.stderr
    vdir = only_video_dir(out)
    chunks = json.loads((vdir / "chunks.json").read_text())["chunks"]
    assert len(chunks) >= 4
    assert all(c["file"] == str(vbr_video) and len(c["packets"]) == 2 for c in chunks)
    assert not [p for p in out.rglob("*.mp4")]
