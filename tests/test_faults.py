"""Unattended batches never die of one input: a chunk refused for good, a server that dies, a
rejected key, a full disk. Each becomes that video's outcome (or a clean exit 2), summary.json
lists every input in input order, and no traceback reaches the user."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import media
import pytest
from batch_support import (
    by_source,
    cli,
    fill,
    make_video,
    run_cli,
    small_disk,
    start_serve,
    stop_process,
    summary,
    wait_for,
)

from pipeline.serve.server import Fault, Server

pytestmark = pytest.mark.integration

KEY = "test-key-faults-2b7e"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """many: 36 s, about 18 chunks at 100 kB; few: 8 s; other: 8 s of other content."""
    folder = tmp_path_factory.mktemp("faults")
    return {"many": make_video(folder / "many.mp4", seconds=36, hue=60),
            "few": make_video(folder / "few.mp4", seconds=8, hue=120),
            "other": make_video(folder / "other.mp4", seconds=8, hue=200)}


def clarifai_run(port: int, out: Path, *inputs: Path, key: str = KEY,
                 timeout: float = 180) -> tuple[int, str]:
    done = run_cli("run", *map(str, inputs), "--out", str(out), "--backend", "clarifai",
                   "--insecure", "--api-base", f"127.0.0.1:{port}", "--max-bytes", "100000",
                   "--concurrency", "4", "--no-progress", env={"CLARIFAI_PAT": key},
                   timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def test_a_chunk_refused_for_good_fails_its_video_and_the_batch_goes_on(
        serve: Callable[..., Server], videos: dict[str, Path], tmp_path: Path) -> None:
    """The API refuses the third request with 31101: that video fails with the reason, its
    chunks not yet sent are cancelled, the next video is done; exit 1."""
    server = serve(faults=(Fault.parse("output:31101"),), fault_at=frozenset({3}),
                   latency_ms=100)
    out = tmp_path / "out"
    code, _ = clarifai_run(server.port, out, videos["many"], videos["few"])
    assert code == 1
    entries = by_source(out)
    assert list(entries) == ["many.mp4", "few.mp4"]
    many, few = entries["many.mp4"], entries["few.mp4"]
    assert many["status"] == "failed" and "INPUT_VIDEO_UNSUPPORTED_FORMAT (31101)" in many["error"]
    assert many["requests"] < many["chunks"], "the refused video's other chunks were cancelled"
    assert few["status"] == "done"


def test_a_server_that_dies_fails_the_rest_fast_with_one_reason(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """serve is SIGKILLed after two answers and never comes back: the video in flight fails
    with "API unreachable" once the retries run out, the videos after it fail fast with the same
    reason, and the run ends on its own with exit 1."""
    log = tmp_path / "requests.jsonl"
    server, port = start_serve("--api-key", KEY, "--latency-ms", "300", "--request-log", str(log))
    out = tmp_path / "out"
    run = cli("run", *(str(videos[n]) for n in ("many", "few", "other")), "--out", str(out),
              "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
              "--max-bytes", "100000", "--no-progress", env={"CLARIFAI_PAT": KEY})
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, 60,
                 "two answers")
        server.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = run.communicate(timeout=120)
    finally:
        stop_process(server, 5)
        stop_process(run, 5)
    assert run.returncode == 1 and "Traceback" not in err, err
    assert time.monotonic() - killed < 90
    entries = by_source(out)
    assert list(entries) == ["many.mp4", "few.mp4", "other.mp4"]
    assert all(e["status"] == "failed" and "API unreachable" in e["error"]
               for e in entries.values()), entries
    assert entries["other.mp4"]["requests"] == 0 and entries["other.mp4"]["chunks"] == 0


def test_a_rejected_key_on_a_many_chunk_video_stops_the_run_cleanly(
        serve: Callable[..., Server], videos: dict[str, Path], tmp_path: Path) -> None:
    """A wrong key with about 18 chunks in the queue: one request, exit 2 with the reason, and
    summary.json still lists both inputs."""
    server = serve()
    out = tmp_path / "out"
    wrong = "wrong-key-5d1c0e"
    code, err = clarifai_run(server.port, out, videos["many"], videos["few"], key=wrong)
    assert code == 2 and "CONN_KEY_INVALID" in err and wrong not in err
    assert len(Path(str(server.config.request_log)).read_text().splitlines()) == 1
    entries = by_source(out)
    assert list(entries) == ["many.mp4", "few.mp4"]
    assert entries["many.mp4"]["chunks"] >= 15
    assert all(e["status"] == "failed" and "CONN_KEY_INVALID" in e["error"]
               for e in entries.values())
    assert wrong not in (out / "summary.json").read_text()


def test_a_full_disk_while_cutting_fails_that_video_and_the_next_is_done(
        tmp_path: Path, small_video: Path) -> None:
    """--out on a 3 MB file system; a 5 MB Matroska video (cut into files: only MP4 sources are
    cut in memory) cannot be cut there (ENOSPC): it fails saying so, its scratch space is freed,
    and a small video after it is done."""
    big = media.testsrc(tmp_path / "big.mkv", seconds=20, extra_vf="noise=alls=30:allf=t",
                        codec=["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M",
                               "-g", "30", "-pix_fmt", "yuv420p"])
    with small_disk(tmp_path / "disk", "3m") as disk:
        done = run_cli("run", str(big), str(small_video), "--out", str(disk), "--max-bytes",
                       "1000000", "--no-progress")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        entries = by_source(disk)
        assert entries["big.mkv"]["status"] == "failed"
        assert "no space left on device" in entries["big.mkv"]["error"]
        assert entries["small.mp4"]["status"] == "done"


def test_a_full_disk_while_saving_checkpoints_is_an_outcome_not_a_crash(
        tmp_path: Path, small_video: Path) -> None:
    """A disk with no space left: the checkpoint cannot be saved, the video fails saying why,
    summary.json's own failure is reported, exit 1; once space is back, a rerun is done."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        filler = fill(disk)
        done = run_cli("run", str(small_video), "--out", str(out), "--no-progress")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "no space left on device" in done.stderr
        assert "summary.json could not be written" in done.stderr
        filler.unlink()
        again = run_cli("run", str(small_video), "--out", str(out), "--no-progress")
        assert again.returncode == 0, again.stderr
        assert summary(out)["counts"]["done"] == 1
