"""Inputs that other people drop into a watched folder: each is processed truthfully or fails
alone with one sentence; nothing is reported done that is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import media
import pytest
from batch_support import by_source, run_cli, summary

pytestmark = pytest.mark.integration


def timeline_of(out: Path) -> dict[str, object]:
    (path,) = out.glob("*/timeline.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def frame_times(out: Path) -> list[int]:
    frames = timeline_of(out)["frames"]
    assert isinstance(frames, list)
    return [f["frame_info"]["time"] for f in frames]


def test_a_manifest_line_with_a_nul_byte_fails_alone(small_video: Path, tmp_path: Path) -> None:
    """A .txt manifest with a NUL byte on line 2: that line fails, named by its number; the
    lines around it are processed."""
    other = tmp_path / "other.mp4"
    shutil.copy(small_video, other)
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(f"{small_video}\nbad\0name.mp4\n{other}\n".encode())
    out = tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), "--no-progress")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    entries = summary(out)["inputs"]
    assert [e["status"] for e in entries] == ["done", "failed", "done"]
    assert entries[1]["source"] == f"{manifest} line 2"
    assert entries[1]["error"] == f"{manifest} line 2: holds a NUL byte"


def test_a_jsonl_manifest_with_one_broken_line_fails_that_line_alone(
        small_video: Path, tmp_path: Path) -> None:
    """Line 2 is not JSON: it fails with its own line number; lines 1 and 3 are processed."""
    other = tmp_path / "other.mp4"
    shutil.copy(small_video, other)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text(json.dumps({"path": str(small_video)}) + "\n{broken\n"
                        + json.dumps(str(other)) + "\n")
    out = tmp_path / "out"
    done = run_cli("run", str(manifest), "--out", str(out), "--no-progress")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    entries = summary(out)["inputs"]
    assert [e["status"] for e in entries] == ["done", "failed", "done"]
    assert entries[1]["error"].startswith(f"{manifest} line 2: not valid JSON")


def test_names_that_look_like_options_or_protocols_are_files(small_video: Path,
                                                              tmp_path: Path) -> None:
    """`-version.mp4` (an ffmpeg option) and `http:x.mp4` (an ffmpeg protocol), found in the
    current folder, are read as the files they are."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("-version.mp4", "http:x.mp4"):
        shutil.copy(small_video, folder / name)
    out = tmp_path / "out"
    done = run_cli("run", ".", "--out", str(out), "--no-progress", cwd=folder)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert {e["status"] for e in summary(out)["inputs"]} == {"done"}
    assert len(summary(out)["inputs"]) == 2


def test_out_inside_the_input_folder_is_never_read_as_input(small_video: Path,
                                                            tmp_path: Path) -> None:
    """--out inside the folder being watched: the rerun finds the same one input, not its own
    chunk files."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(small_video, folder / "a.mp4")
    out = folder / "results"
    for _ in range(2):
        done = run_cli("run", str(folder), "--out", str(out), "--no-progress",
                       "--max-bytes", "100000")
        assert done.returncode == 0, done.stderr
        assert [Path(e["source"]).name for e in summary(out)["inputs"]] == ["a.mp4"]


def test_a_url_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    """user:password@ in a URL: the input fails saying what is wrong; the password appears
    nowhere."""
    out = tmp_path / "out"
    done = run_cli("run", "http://me:hunter2pw@127.0.0.1:9/a.mp4", "--out", str(out),
                   "--no-progress")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (entry,) = summary(out)["inputs"]
    assert "user name or password" in entry["error"]
    assert "hunter2pw" not in done.stderr + done.stdout + (out / "summary.json").read_text()


@pytest.fixture(scope="module")
def vfr_avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s AVI whose first 5 s hold every third frame: the index lists 360 frames, 260 of them
    with data; the gaps are empty "drop" entries, as camera and archive AVIs have."""
    path = tmp_path_factory.mktemp("avi") / "vfr.avi"
    return media.testsrc(path, seconds=12, extra_vf="select='not(mod(n\\,3))+gt(n\\,150)'",
                         codec=["-c:v", "mpeg4", "-q:v", "4", "-g", "30"],
                         out_args=["-fps_mode", "passthrough"])


@pytest.mark.parametrize("max_bytes", ["10000000", "200000"])
def test_a_variable_frame_rate_avi_with_drop_entries_is_processed_whole(
        vfr_avi: Path, tmp_path: Path, max_bytes: str) -> None:
    """Sent whole or cut, the AVI is done on its real clock: 12 frames, 500 ms to 11.5 s."""
    assert media.ffprobe_count(vfr_avi) == 260
    out = tmp_path / "out"
    done = run_cli("run", str(vfr_avi), "--out", str(out), "--no-progress",
                   "--max-bytes", max_bytes)
    assert done.returncode == 0, done.stderr
    assert frame_times(out) == list(range(500, 12_000, 1000))


def test_a_truncated_mkv_fails_as_truncated(tmp_path: Path) -> None:
    """Half of a 20 s MKV (as a copy still in progress looks): failed as truncated, not done as
    a 10 s video; the whole file, once there, is done."""
    whole = media.testsrc(tmp_path / "whole.mkv", seconds=20)
    half = tmp_path / "half.mkv"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    done = run_cli("run", str(half), str(whole), "--out", str(out), "--no-progress")
    assert done.returncode == 1, done.stderr
    entries = by_source(out)
    assert entries["half.mkv"]["status"] == "failed"
    assert "truncated" in entries["half.mkv"]["error"]
    assert entries["whole.mkv"]["status"] == "done"


def test_a_truncated_mp4_with_its_index_at_the_end_says_truncated(tmp_path: Path) -> None:
    """moov at the end and half the bytes gone: "truncated", not "not a readable video"."""
    whole = media.testsrc(tmp_path / "whole.mp4", seconds=10)
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    done = run_cli("run", str(half), "--out", str(out), "--no-progress")
    assert done.returncode == 1
    (entry,) = summary(out)["inputs"]
    assert "truncated" in entry["error"]


@pytest.mark.parametrize("frames", [1, 10])
def test_a_video_shorter_than_one_sample_gets_its_frame(tmp_path: Path, frames: int) -> None:
    """One frame (or a third of a second) at 1 frame/s: one frame in the timeline, at 500 ms."""
    video = tmp_path / "short.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30", "-frames:v", str(frames),
                 "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video))
    out = tmp_path / "out"
    done = run_cli("run", str(video), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert frame_times(out) == [500]
