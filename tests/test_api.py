"""The Python API: `pipeline.run_batch` runs a batch in process as the command line does (its
outcomes equal the CLI's summary.json), raises ConfigError for a bad setting (never SystemExit,
never a print), stops on a caller's flag; `pipeline.load_timeline` gives typed frames; and
`import pipeline` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch_support import REPO, make_video, run_cli, summary

import pipeline
from pipeline.serve.server import Server
from pipeline.types import Frame

pytestmark = pytest.mark.integration

KEY = "test-key-api-4e19"
COMPARED = ("source", "status", "id", "error", "note", "chunks", "requests", "retries",
            "throttles", "bytes_sent")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("api")
    return [make_video(folder / "first.mp4", seconds=8, hue=40),
            make_video(folder / "second.mp4", seconds=4, hue=140)]


def test_run_batch_on_two_videos_gives_what_the_command_line_gives(
        videos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run_batch in process and `video-pipeline run` on the same two videos and settings:
    the same outcome for each input, in order, as summary.json has them; each timeline path
    is the video's timeline.json, and nothing is printed."""
    result = pipeline.run_batch(videos, tmp_path / "api", max_bytes=200_000,
                                export="csv,srt", min_confidence=0.6)
    assert capsys.readouterr() == ("", "")
    done = run_cli("run", *map(str, videos), "--out", str(tmp_path / "cli"), "--max-bytes",
                   "200000", "--export", "csv,srt", "--min-confidence", "0.6", "--no-progress")
    assert done.returncode == 0, done.stderr
    from_cli = summary(tmp_path / "cli")["inputs"]
    from_api = [o.as_dict() for o in result.outcomes]
    assert [{k: o[k] for k in COMPARED} for o in from_api] == [
        {k: e[k] for k in COMPARED} for e in from_cli]
    assert [{k: e[k] for k in COMPARED} for e in summary(tmp_path / "api")["inputs"]] == [
        {k: o[k] for k in COMPARED} for o in from_api]
    assert result.ok and result.counts["done"] == 2 and not result.interrupted
    assert result.outcomes[0].chunks >= 2, "the first video is cut into chunks"
    for outcome in result.outcomes:
        assert outcome.timeline == tmp_path / "api" / str(outcome.id) / "timeline.json"
        assert (outcome.timeline.parent / "segments.srt").is_file()


def test_load_timeline_gives_typed_frames_equal_to_the_file(videos: list[Path],
                                                            tmp_path: Path) -> None:
    """load_timeline reads timeline.json (or its folder) into frozen values: Frames with
    integer times and their concepts, the source, model, limits and chunks."""
    result = pipeline.run_batch(str(videos[1]), tmp_path / "out")
    (outcome,) = result.outcomes
    assert outcome.timeline is not None
    loaded = pipeline.load_timeline(outcome.timeline)
    raw = json.loads(outcome.timeline.read_text())
    assert all(isinstance(f, Frame) for f in loaded.frames)
    assert [(f.time_ms, [(c.id, c.name, c.value) for c in f.concepts])
            for f in loaded.frames] == [
        (f["frame_info"]["time"], [(c["id"], c["name"], c["value"])
                                   for c in f["data"]["concepts"]]) for f in raw["frames"]]
    assert loaded.source.path == str(videos[1]) and loaded.source.duration_ms == 4000
    assert loaded.source.frame_rate == 25 and loaded.model.id == raw["model"]["id"]
    assert loaded.limits.max_bytes == 10_000_000 and len(loaded.chunks) == 1
    assert pipeline.load_timeline(outcome.timeline.parent) == loaded


def test_load_timeline_of_something_else_is_an_input_error(tmp_path: Path) -> None:
    """A missing file, or a JSON file that is not a timeline, raises InputError naming it."""
    with pytest.raises(pipeline.InputError, match="no such file"):
        pipeline.load_timeline(tmp_path / "timeline.json")
    other = tmp_path / "other.json"
    other.write_text('{"counts": {}, "inputs": []}')
    with pytest.raises(pipeline.InputError, match="not a timeline.json"):
        pipeline.load_timeline(other)


@pytest.mark.parametrize(("settings", "said"), [
    ({"max_bytes": 5}, "--max-bytes"), ({"sample_ms": 10}, "--sample-ms"),
    ({"maxbytes": 2}, "unknown setting maxbytes"), ({"export": "csv,edl"}, "edl"),
    ({"notify": "https://hooks.example/x"}, "VIDEO_PIPELINE_NOTIFY_SECRET"),
    ({"metrics_file": "m.txt"}, ".prom")])
def test_a_bad_setting_raises_config_error_and_nothing_else(
        videos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        settings: dict[str, Any], said: str) -> None:
    """A setting that is not usable raises pipeline.ConfigError saying which (not SystemExit),
    prints nothing and writes nothing."""
    with pytest.raises(pipeline.ConfigError, match=said.replace(".", r"\.")):
        pipeline.run_batch(videos, tmp_path / "out", **settings)
    assert capsys.readouterr() == ("", "") and not (tmp_path / "out").exists()


def test_a_set_stop_flag_ends_the_batch_with_its_outcomes(videos: list[Path],
                                                          tmp_path: Path) -> None:
    """A caller's StopFlag set before the run: no exception, the result says interrupted and
    each input says it was not processed (the command line turns this into exit 130)."""
    stop = pipeline.StopFlag()
    stop.set()
    result = pipeline.run_batch(videos, tmp_path / "out", stop=stop)
    assert result.interrupted and not result.ok
    assert [o.status for o in result.outcomes] == ["failed", "failed"]
    assert all("interrupted" in str(o.error) for o in result.outcomes)


def test_a_refused_key_raises_auth_error_after_writing_the_summary(
        serve: Callable[..., Server], videos: list[Path], tmp_path: Path) -> None:
    """The API refuses the key: AuthError is raised (the command line's exit 2), once
    summary.json lists every input."""
    server = serve()
    with pytest.raises(pipeline.AuthError, match="CONN_KEY_INVALID"):
        pipeline.run_batch(videos, tmp_path / "out", backend="clarifai", insecure=True,
                           api_base=f"127.0.0.1:{server.port}", api_key="wrong-key-0b1d")
    assert [e["status"] for e in summary(tmp_path / "out")["inputs"]] == ["failed", "failed"]


def test_import_pipeline_stays_light() -> None:
    """`import pipeline` loads none of its modules nor any heavy library; the API's names
    load on first use."""
    code = ("import sys, pipeline; before = set(sys.modules); pipeline.run_batch; "
            "pipeline.load_timeline; pipeline.ConfigError; "
            "print(sorted(m for m in before if m.startswith('pipeline.') or m.split('.')[0] "
            "in ('numpy', 'grpc', 'opentimelineio', 'prometheus_client', 'onnxruntime')))")
    found = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                           text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018
