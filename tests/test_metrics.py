"""--metrics-file: the run's figures in the Prometheus text format, parsed back with
prometheus_client's own parser and equal to summary.json's; counters that add up over runs,
the last success's time kept through a failed run, traffic counted as the server saw it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch_support import make_video, run_cli, summary
from prometheus_client.parser import text_string_to_metric_families

from pipeline.serve.server import Fault, Server

pytestmark = pytest.mark.integration

KEY = "test-key-metrics-81c2"
STATUSES = ("done", "skipped", "failed", "deferred")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("metrics")
    bad = folder / "broken.mp4"
    bad.write_bytes(b"\0" * 5000)
    return {"one": make_video(folder / "one.mp4", seconds=8, hue=10),
            "two": make_video(folder / "two.mp4", seconds=4, hue=170), "bad": bad}


def samples(path: Path) -> dict[tuple[str, str], float]:
    """Every sample of the file by (name, its one label's value or "")."""
    families = text_string_to_metric_families(path.read_text(encoding="utf-8"))
    return {(s.name, next(iter(s.labels.values()), "")): s.value
            for family in families for s in family.samples}


def totals(saved: dict[str, Any]) -> dict[str, float]:
    """The figures summary.json gives, as the metrics name them."""
    return {"requests": saved["requests"], "retries": saved["retries"],
            "throttles": saved["throttles"], "bytes_sent": saved["bytes_sent"],
            "frames_billed": sum(e.get("frames_billed") or 0 for e in saved["inputs"])}


def assert_matches(found: dict[tuple[str, str], float], *runs: dict[str, Any]) -> None:
    """The counters are the sums of `runs`' summaries; the last-run gauges the last one's."""
    for status in STATUSES:
        assert found[("video_pipeline_videos_total", status)] == sum(
            r["counts"].get(status, 0) for r in runs), status
        assert found[("video_pipeline_last_run_videos", status)] == runs[-1]["counts"].get(
            status, 0)
    for name in ("requests", "retries", "throttles", "bytes_sent", "frames_billed"):
        assert found[(f"video_pipeline_{name}_total", "")] == sum(totals(r)[name] for r in runs)


def test_the_metrics_file_parses_and_equals_summary_json(videos: dict[str, Path],
                                                         tmp_path: Path) -> None:
    """Two videos done and one failed: the file parses with prometheus_client's parser, its
    counters and last-run gauges equal summary.json's figures, the run is marked failed (exit
    1) and, never having succeeded, has no last-success time."""
    prom = tmp_path / "video_pipeline.prom"
    before = time.time()
    done = run_cli("run", str(videos["one"]), str(videos["two"]), str(videos["bad"]), "--out",
                   str(tmp_path / "out"), "--metrics-file", str(prom), "--no-progress")
    assert done.returncode == 1, done.stderr
    found = samples(prom)
    saved = summary(tmp_path / "out")
    assert saved["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert_matches(found, saved)
    assert found[("video_pipeline_runs_total", "failure")] == 1
    assert found[("video_pipeline_last_run_success", "")] == 0
    assert ("video_pipeline_last_success_timestamp_seconds", "") not in found
    assert before <= found[("video_pipeline_last_run_timestamp_seconds", "")] <= time.time()
    assert 0 < found[("video_pipeline_last_run_duration_seconds", "")] < time.time() - before
    assert all(name.startswith("video_pipeline_") for name, _ in found)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(prom.name)] == [prom.name]


def test_counters_add_up_over_runs_and_the_last_success_survives_a_failed_run(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """A good run, a failed one, a good rerun (skipped as done): counters are the sums of the
    three summaries; the failed run keeps the first run's success time; the third replaces it;
    each run replaces the file (a new inode), leaving no temporary file beside it."""
    prom = tmp_path / "job.prom"
    out = tmp_path / "out"

    def run(*inputs: Path, code: int) -> dict[str, Any]:
        done = run_cli("run", *map(str, inputs), "--out", str(out), "--metrics-file",
                       str(prom), "--no-progress")
        assert done.returncode == code, done.stderr
        return summary(out)

    first = run(videos["two"], code=0)
    success = samples(prom)[("video_pipeline_last_success_timestamp_seconds", "")]
    inode = prom.stat().st_ino
    second = run(videos["bad"], code=1)
    found = samples(prom)
    assert found[("video_pipeline_last_success_timestamp_seconds", "")] == success
    assert found[("video_pipeline_last_run_success", "")] == 0
    assert prom.stat().st_ino != inode
    third = run(videos["two"], code=0)
    found = samples(prom)
    assert third["counts"]["skipped"] == 1
    assert_matches(found, first, second, third)
    assert found[("video_pipeline_runs_total", "success")] == 2
    assert found[("video_pipeline_runs_total", "failure")] == 1
    assert found[("video_pipeline_last_success_timestamp_seconds", "")] > success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.prom", "out"]


def test_retries_throttles_and_bytes_are_what_the_server_saw(
        serve: Callable[..., Server], videos: dict[str, Path], tmp_path: Path) -> None:
    """Against `serve`, whose 2nd and 4th requests are throttled (CONN_THROTTLED): summary.json
    and the metrics file count 2 retries and 2 throttles, and as many bytes sent as the
    server's request log received."""
    server = serve(faults=(Fault.parse("11005"),), fault_at=frozenset({2, 4}))
    prom = tmp_path / "api.prom"
    out = tmp_path / "out"
    done = run_cli("run", str(videos["one"]), "--out", str(out), "--backend", "clarifai",
                   "--insecure", "--api-base", f"127.0.0.1:{server.port}", "--max-bytes",
                   "100000", "--concurrency", "1", "--metrics-file", str(prom), "--no-progress",
                   env={"CLARIFAI_PAT": KEY}, timeout=180)
    assert done.returncode == 0, done.stderr
    log = [json.loads(line) for line in
           Path(str(server.config.request_log)).read_text().splitlines()]
    saved = summary(out)
    (entry,) = saved["inputs"]
    assert entry["chunks"] >= 3 and entry["requests"] == len(log) == entry["chunks"] + 2
    assert entry["retries"] == saved["retries"] == 2
    assert entry["throttles"] == saved["throttles"] == 2
    assert entry["bytes_sent"] == saved["bytes_sent"] == sum(e["size_bytes"] for e in log) > 0
    assert_matches(samples(prom), saved)


@pytest.mark.parametrize(("name", "said"), [
    ("metrics.txt", "must end in .prom"), ("missing/metrics.prom", "its folder must exist")])
def test_an_unusable_metrics_path_stops_the_run_before_anything(
        videos: dict[str, Path], tmp_path: Path, name: str, said: str) -> None:
    """A path node_exporter would not read (not *.prom), or in a folder that is not there, is
    a configuration error (exit 2): nothing is processed."""
    done = run_cli("run", str(videos["two"]), "--out", str(tmp_path / "out"),
                   "--metrics-file", str(tmp_path / name))
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_previous_file_that_does_not_parse_starts_the_counters_again(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """A damaged previous file (not the text format) is replaced; the counters restart from
    this run's figures, which Prometheus reads as a counter reset."""
    prom = tmp_path / "job.prom"
    prom.write_text("video_pipeline_requests_total {{{ not metrics\n")
    done = run_cli("run", str(videos["two"]), "--out", str(tmp_path / "out"),
                   "--metrics-file", str(prom), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_matches(samples(prom), summary(tmp_path / "out"))
