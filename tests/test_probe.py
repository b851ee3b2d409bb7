"""Probing: typed values parsed once; MP4 sample tables read without a pass over the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import probe as probing
from pipeline.media import mp4read as mp4

pytestmark = pytest.mark.integration


def relative(scanned: probing.Scanned) -> list[tuple[int, int, bool]]:
    origin = min(p.pts for p in scanned.packets)
    return [(p.pts - origin, p.size, p.key) for p in scanned.packets]


@pytest.mark.parametrize("name", ["rotated.mp4", "audio-first.mp4"])
def test_mp4_sample_tables_agree_with_ffprobe(name: str, odd_videos: dict[str, Path]) -> None:
    """Times, sizes and keyframes read from moov equal ffprobe's packet listing."""
    path = str(odd_videos[name])
    info = probing.probe(path, scan=False)
    fast = probing.mp4_packets(path, info)
    assert fast is not None
    slow = probing.scan_packets(path, info.video)
    assert relative(fast) == relative(slow)
    assert fast.data_end == slow.data_end


def test_mp4_with_b_frames_agrees_with_ffprobe(vbr_video: Path) -> None:
    """A B-frame stream (decode order differs from display order, edit list) reads the same."""
    info = probing.probe(str(vbr_video), scan=False)
    fast = probing.mp4_packets(str(vbr_video), info)
    assert fast is not None
    assert relative(fast) == relative(probing.scan_packets(str(vbr_video), info.video))
    assert [p.pts for p in fast.packets] != sorted(p.pts for p in fast.packets)


def test_fragmented_mp4_falls_back_to_ffprobe(vbr_video: Path, tmp_path: Path) -> None:
    """A fragmented MP4 has no complete sample table: the reader declines, probe still works."""
    frag = tmp_path / "frag.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vbr_video), "-c", "copy", "-movflags",
                    "frag_keyframe+empty_moov", str(frag)], check=True)
    assert mp4.video_tables(str(frag)) == {}
    info = probing.probe(str(frag))
    assert info.scan is not None and len(info.scan.video) == 900


def test_probe_json_reports_streams_keyframes_and_verdicts(odd_videos: dict[str, Path]) -> None:
    """`probe --json`: container, streams with rotation, keyframes, longest interval, verdicts."""
    done = subprocess.run([sys.executable, "-m", "pipeline", "probe", "--json",
                           str(odd_videos["rotated.mp4"])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["container"].startswith("mov,mp4")
    (video,) = [s for s in report["streams"] if s["kind"] == "video"]
    assert video["rotation"] in (90, 270) and video["codec"] == "h264"
    assert report["video_frames"] == 360 and report["keyframes"] >= 12
    assert 0 < report["longest_keyframe_interval_ms"] <= 1000
    assert report["verdict"]["bytes"] == {"fits": True, "chunks": 1, "max_bytes": 10_000_000,
                                          "max_duration_ms": 600_000}


def test_plan_and_split_commands(vbr_video: Path, tmp_path: Path) -> None:
    """`plan --json` lists chunks under the budget; `split` writes them and chunks.json."""
    plan = subprocess.run([sys.executable, "-m", "pipeline", "plan", str(vbr_video),
                           "--max-bytes", "500000", "--json"], capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert not planned["whole"] and len(planned["chunks"]) >= 4
    assert all(c["expected_bytes"] <= 500_000 for c in planned["chunks"])
    out = tmp_path / "chunks"
    split = subprocess.run([sys.executable, "-m", "pipeline", "split", str(vbr_video), "--out",
                            str(out), "--max-bytes", "500000"], capture_output=True, text=True)
    assert split.returncode == 0, split.stderr
    listing = json.loads((out / "chunks.json").read_text())
    assert len(listing["chunks"]) == len(planned["chunks"])
    for chunk in listing["chunks"]:
        assert Path(chunk["file"]).stat().st_size == chunk["size_bytes"] <= 500_000
    assert [c["start_ms"] for c in listing["chunks"]] == [c["start_ms"]
                                                           for c in planned["chunks"]]
