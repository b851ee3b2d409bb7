"""What a rerun trusts on disk: timeline.json only if it is the file outputs.json recorded (its
size and sha256), a saved chunk result only if its checksum holds. Whatever fails is made again:
the outputs from sound saved results (nothing sent), a damaged result by predicting its chunk
again (serve's request log shows exactly which). Proved with the real CLI against `serve`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_support import MAX_BYTES, copy_folder, make_video, run_cli, summary
from serve_support import logged_server

from pipeline.output import timeline
from pipeline.output.exports import Outputs, write_outputs
from pipeline.output.segments import Rules
from pipeline.serve.server import Server

pytestmark = pytest.mark.integration

KEY = "saved-results-key-5a0e"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with logged_server(tmp_path_factory.mktemp("serve"), KEY) as started:
        yield started


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s: several chunks at MAX_BYTES, each of its own size."""
    return make_video(tmp_path_factory.mktemp("saved") / "clip.mp4", seconds=12, hue=90)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, server: Server, video: Path) -> Path:
    """--out of one finished run (copied by each test, never changed)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    done = _run(video, out, server)
    assert done.returncode == 0, done.stderr
    return out


def _run(video: Path, out: Path, server: Server, *flags: str) -> Any:
    return run_cli("run", str(video), "--out", str(out), "--max-bytes", MAX_BYTES,
                   "--backend", "clarifai", "--insecure", "--api-base",
                   f"127.0.0.1:{server.port}", "--no-progress", *flags,
                   env={"CLARIFAI_PAT": KEY}, timeout=300)


def _sent_since(server: Server, since: float) -> list[int]:
    """Sizes of the predictions serve was asked for since `since` (epoch seconds)."""
    assert server.config.request_log is not None
    lines = Path(server.config.request_log).read_text().splitlines()
    return [e["size_bytes"] for e in map(json.loads, lines)
            if e["method"] == "PostModelOutputs" and e["time"] >= since]


def _video_dir(out: Path) -> Path:
    (found,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return found


def _chunk_sizes(vdir: Path) -> dict[int, int]:
    chunks = json.loads((vdir / "chunks.json").read_text())["chunks"]
    sizes = {c["index"]: c["size_bytes"] for c in chunks}
    assert len(sizes) >= 3 and len(set(sizes.values())) == len(sizes), sizes
    return sizes


def _edit_a_value(result: Path) -> None:
    """Change one concept value of a saved result, as a hand (or a bad disk) might."""
    saved = json.loads(result.read_text())
    concept = saved["frames"][1]["data"]["concepts"][0]
    concept["value"] = 0.999 if concept["value"] < 0.5 else 0.001
    result.write_text(json.dumps(saved, indent=2) + "\n")


def _cut_in_half(result: Path) -> None:
    data = result.read_bytes()
    result.write_bytes(data[: len(data) // 2])


def _segments_from_timeline(vdir: Path, rules: Rules, into: Path) -> bytes:
    """segments.json as made from timeline.json's frames with `rules`."""
    head = timeline.read_head(vdir / "timeline.json")
    into.mkdir()
    write_outputs(into, list(timeline.read_frames(vdir / "timeline.json")),
                  sample_ms=int(head["sample_ms"]),
                  duration_ms=int(head["source"]["duration_ms"]),
                  outputs=Outputs(rules, exports=()))
    return (into / "segments.json").read_bytes()


def _recorded(vdir: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((vdir / "outputs.json").read_text())["timeline"]
    return record


def test_outputs_json_records_timeline_jsons_size_and_sha256(finished: Path) -> None:
    """A finished video's outputs.json (written last) names timeline.json's exact size and
    sha256, and each saved result carries the sha256 of its own content."""
    vdir = _video_dir(finished)
    data = (vdir / "timeline.json").read_bytes()
    assert _recorded(vdir) == {"size_bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()}
    saved = json.loads(next((vdir / "results").glob("chunk-*.json")).read_text())
    payload = {k: v for k, v in saved.items() if k != "sha256"}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False)
    assert saved["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("damage", ["empty", "cut", "edited"])
def test_a_damaged_timeline_is_made_again_from_sound_saved_results_sending_nothing(
        finished: Path, tmp_path: Path, server: Server, video: Path, damage: str) -> None:
    """timeline.json emptied, cut short, or with one value changed: the rerun does not skip the
    video; it writes timeline.json whole again from the saved results, sending nothing."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    path = vdir / "timeline.json"
    whole = path.read_bytes()
    spoiled = {"empty": b"", "cut": whole[: len(whole) // 2],
               "edited": whole.replace(b'"value": 0.', b'"value": 0.9', 1)}[damage]
    assert spoiled != whole
    path.write_bytes(spoiled)
    began = time.time()
    done = _run(video, out, server)
    assert done.returncode == 0, done.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "done" and entry["requests"] == 0
    assert entry["resumed"] == entry["chunks"]
    assert _sent_since(server, began) == []
    assert path.read_bytes() == whole
    assert _recorded(vdir)["sha256"] == hashlib.sha256(whole).hexdigest()


@pytest.mark.parametrize("damage", [_edit_a_value, _cut_in_half], ids=["edited", "cut"])
def test_a_damaged_saved_result_is_predicted_again_when_outputs_are_made_from_it(
        finished: Path, tmp_path: Path, server: Server, video: Path, damage: Any) -> None:
    """A saved result edited (or cut short) after its video was done, then other output
    settings: the rerun sends exactly that chunk again, and segments.json agrees with
    timeline.json (which equals the first run's)."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    sizes = _chunk_sizes(vdir)
    first = (vdir / "timeline.json").read_bytes()
    damage(vdir / "results" / "chunk-00001.json")
    began = time.time()
    done = _run(video, out, server, "--min-confidence", "0.3")
    assert done.returncode == 0, done.stderr
    assert _sent_since(server, began) == [sizes[1]]
    assert (vdir / "timeline.json").read_bytes() == first
    assert (vdir / "segments.json").read_bytes() == _segments_from_timeline(
        vdir, Rules(min_confidence=0.3), tmp_path / "made")


def test_a_damaged_saved_result_and_a_damaged_timeline_send_that_chunk_alone(
        finished: Path, tmp_path: Path, server: Server, video: Path) -> None:
    """timeline.json emptied and one saved result edited: only that chunk is sent again; the
    timeline is the first run's, byte for byte."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    sizes = _chunk_sizes(vdir)
    first = (vdir / "timeline.json").read_bytes()
    (vdir / "timeline.json").write_bytes(b"")
    _edit_a_value(vdir / "results" / "chunk-00002.json")
    began = time.time()
    done = _run(video, out, server)
    assert done.returncode == 0, done.stderr
    assert _sent_since(server, began) == [sizes[2]]
    (entry,) = summary(out)["inputs"]
    assert (entry["status"], entry["requests"], entry["resumed"]) == (
        "done", 1, entry["chunks"] - 1)
    assert (vdir / "timeline.json").read_bytes() == first


def _as_an_earlier_version_wrote(vdir: Path) -> None:
    """Results without a checksum under checkpoint format 2, outputs.json without timeline.json's
    record: what versions before checksums left."""
    for path in (vdir / "results").glob("chunk-*.json"):
        saved = json.loads(path.read_text())
        del saved["sha256"]
        saved["key"]["format"] = 2
        path.write_text(json.dumps(saved, indent=2) + "\n")
    made = json.loads((vdir / "outputs.json").read_text())
    del made["timeline"]
    (vdir / "outputs.json").write_text(json.dumps(made, indent=2) + "\n")


def test_results_saved_by_an_earlier_version_are_predicted_again_once(
        finished: Path, tmp_path: Path, server: Server, video: Path) -> None:
    """An unfinished video whose results carry no checksum: every chunk is sent again, once; a
    second rerun sends nothing."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    sizes = _chunk_sizes(vdir)
    _as_an_earlier_version_wrote(vdir)
    (vdir / "timeline.json").unlink()
    began = time.time()
    assert _run(video, out, server).returncode == 0
    assert sorted(_sent_since(server, began)) == sorted(sizes.values())
    began = time.time()
    assert _run(video, out, server).returncode == 0
    assert _sent_since(server, began) == []
    assert summary(out)["inputs"][0]["status"] == "skipped"


def test_a_video_done_by_an_earlier_version_stays_done_and_gets_its_record(
        finished: Path, tmp_path: Path, server: Server, video: Path) -> None:
    """A done video whose outputs.json has no record of timeline.json (an earlier version's):
    timeline.json is read through once, found whole, and recorded; nothing is sent, it is
    kept byte for byte, and the next rerun skips the video at once."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    first = (vdir / "timeline.json").read_bytes()
    _as_an_earlier_version_wrote(vdir)
    began = time.time()
    assert _run(video, out, server).returncode == 0
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "skipped" and _sent_since(server, began) == []
    assert (vdir / "timeline.json").read_bytes() == first
    assert _recorded(vdir)["sha256"] == hashlib.sha256(first).hexdigest()
    assert _run(video, out, server).returncode == 0
    assert summary(out)["inputs"][0]["note"] == "already done"


def test_a_timeline_holding_nan_from_an_earlier_version_is_made_again(
        finished: Path, tmp_path: Path, server: Server, video: Path) -> None:
    """A done video of an earlier version (no record) whose timeline.json holds NaN, which no
    standard JSON reader takes: it is not done; timeline.json is written again from the sound
    saved results, without NaN, sending nothing."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    path = vdir / "timeline.json"
    first = path.read_bytes()
    path.write_bytes(re.sub(rb'"value": [0-9.e-]+', b'"value": NaN', first, count=1))
    made = json.loads((vdir / "outputs.json").read_text())
    del made["timeline"]
    (vdir / "outputs.json").write_text(json.dumps(made, indent=2) + "\n")
    began = time.time()
    assert _run(video, out, server).returncode == 0
    (entry,) = summary(out)["inputs"]
    assert (entry["status"], entry["requests"]) == ("done", 0)
    assert _sent_since(server, began) == []
    assert path.read_bytes() == first


def test_a_rerun_over_a_done_video_needs_only_timeline_jsons_record(
        finished: Path, tmp_path: Path, server: Server, video: Path) -> None:
    """With the same settings, a done video is skipped on timeline.json's record alone: even
    results/ gone, nothing is read or sent, and nothing is written."""
    out = copy_folder(finished, tmp_path / "out")
    vdir = _video_dir(out)
    shutil.rmtree(vdir / "results")
    stamps = {p: p.stat().st_mtime_ns for p in vdir.rglob("*") if p.is_file()}
    began = time.time()
    assert _run(video, out, server).returncode == 0
    assert summary(out)["inputs"][0]["note"] == "already done"
    assert _sent_since(server, began) == []
    assert stamps == {p: p.stat().st_mtime_ns for p in vdir.rglob("*") if p.is_file()}
