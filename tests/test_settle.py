"""Files still being written into a watched folder are deferred, never done in part; the run after
they have settled processes them whole. Also: a run's bookkeeping is linear in its inputs, and a
file name cannot forge lines in a text log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import media
import pytest
from batch_support import (
    REPO,
    by_source,
    make_video,
    run_cli,
    start_serve,
    stop_process,
    summary,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "test-key-settle-9f3a"
SETTLE = {"VIDEO_PIPELINE_SETTLE_SECONDS": "2"}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Whole recordings to feed into a folder bit by bit: an MPEG-TS (a camera's) and a live
    Matroska file (unknown size, as a recorder writing to a pipe leaves it)."""
    folder = tmp_path_factory.mktemp("recordings")
    ts = media.testsrc(folder / "cam.ts", seconds=10, extra_vf="noise=alls=20:allf=t")
    mkv = folder / "rec.mkv"
    with open(mkv, "wb") as fh:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                        "testsrc2=size=320x240:rate=25", "-t", "10", "-c:v", "libx264",
                        "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
                        "-f", "matroska", "pipe:1"], stdout=fh, check=True)
    return {"ts": ts, "mkv": mkv}


class _Writer:
    """Copies `source` into `target` a piece at a time, as a recorder writes."""

    def __init__(self, source: Path, target: Path, *, first: float = 0.3, step: float = 0.05,
                 every: float = 0.3) -> None:
        self.data = source.read_bytes()
        self.target = target
        self.done = threading.Event()
        self._go = threading.Event()
        cut = int(len(self.data) * first)
        target.write_bytes(self.data[:cut])
        self._thread = threading.Thread(target=self._write, args=(cut, step, every), daemon=True)
        self._thread.start()

    def _write(self, at: int, step: float, every: float) -> None:
        with open(self.target, "ab") as fh:
            while at < len(self.data):
                time.sleep(every)
                piece = self.data[at:at + max(1, int(len(self.data) * step))]
                fh.write(piece)
                fh.flush()
                at += len(piece)
        self.done.set()

    def wait(self) -> None:
        assert self.done.wait(120), "the writer did not finish"


@pytest.mark.parametrize("kind", ["ts", "mkv"])
def test_a_recording_still_being_written_is_deferred_then_done_whole(
        tmp_path: Path, recordings: dict[str, Path], kind: str) -> None:
    """A camera's MPEG-TS or a recorder's live Matroska growing in the watched folder is
    deferred (exit 0, no timeline) while a finished video beside it is done; once it has
    settled, the next run processes all of it."""
    watched = tmp_path / "watched"
    watched.mkdir()
    make_video(watched / "finished.mp4", seconds=6)
    growing = watched / f"recording.{kind}"
    writer = _Writer(recordings[kind], growing)
    out = tmp_path / "out"
    first = run_cli("run", str(watched), "--out", str(out), "--no-progress", env=SETTLE)
    assert first.returncode == 0, first.stderr
    entries = by_source(out)
    assert entries["finished.mp4"]["status"] == "done"
    deferred = entries[growing.name]
    assert deferred["status"] == "deferred" and "still being written" in deferred["note"]
    assert "1 deferred" in first.stdout
    assert len(list(out.glob("*/timeline.json"))) == 1

    writer.wait()
    time.sleep(2.5)
    second = run_cli("run", str(watched), "--out", str(out), "--no-progress", env=SETTLE)
    assert second.returncode == 0, second.stderr
    entry = by_source(out)[growing.name]
    assert entry["status"] == "done"
    timeline = json.loads((out / entry["id"] / "timeline.json").read_text())
    assert timeline["source"]["duration_ms"] >= 9_900
    assert len(timeline["frames"]) == 10


@pytest.fixture
def slow_serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "requests.jsonl"
    proc, port = start_serve("--api-key", KEY, "--latency-ms", "1500", "--request-log", str(log))
    try:
        yield f"127.0.0.1:{port}", log
    finally:
        stop_process(proc, 10)


def test_a_file_modified_while_it_is_processed_is_deferred_and_never_done(
        tmp_path: Path, slow_serve: tuple[str, Path]) -> None:
    """A video modified while its chunks are predicted is deferred, not done; the rerun (the
    same content) is done from the results already saved."""
    api, log = slow_serve
    video = make_video(tmp_path / "edited.mp4", seconds=8)
    old = time.time() - 60
    os.utime(video, (old, old))
    out = tmp_path / "out"
    args = ("run", str(video), "--out", str(out), "--no-progress", "--backend", "clarifai",
            "--api-base", api, "--insecure", "--max-bytes", "200000", "--concurrency", "1")
    run = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ, "CLARIFAI_PAT": KEY})
    try:
        wait_for(lambda: log.exists() and log.read_text().count("\n") >= 1, 60, "a request")
        os.utime(video)  # touched while the run works on it
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, err
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "deferred" and "changed while it was processed" in entry["note"]
    assert not list(out.glob("*/timeline.json"))

    sent = log.read_text().count("\n")
    time.sleep(2.5)
    again = run_cli(*args, env={"CLARIFAI_PAT": KEY, **SETTLE})
    assert again.returncode == 0, again.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "done" and entry["resumed"] == entry["chunks"]
    assert log.read_text().count("\n") == sent


def test_a_fresh_file_that_does_not_change_is_processed(tmp_path: Path,
                                                        recordings: dict[str, Path]) -> None:
    """A whole MPEG-TS copied in a moment ago (its container cannot say it is finished) is
    watched for the settle time, found still, and done."""
    copy = tmp_path / "copied.ts"
    copy.write_bytes(recordings["ts"].read_bytes())
    out = tmp_path / "out"
    started = time.monotonic()
    done = run_cli("run", str(copy), "--out", str(out), "--no-progress", env=SETTLE)
    assert done.returncode == 0, done.stderr
    assert summary(out)["inputs"][0]["status"] == "done"
    assert time.monotonic() - started >= 2


def test_bookkeeping_of_3000_inputs_is_linear(tmp_path: Path) -> None:
    """3,000 inputs (each failing at once) take seconds, not minutes: summary.json is not
    rewritten after each one; progress.jsonl has a line per input; the run writes a few MB."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{tmp_path}/missing/video-{i:04d}.mp4\n" for i in range(3000)))
    out = tmp_path / "out"
    wrapper = ("import runpy, sys\nsys.argv = ['video-pipeline', *sys.argv[1:]]\n"
               "try:\n    runpy.run_module('pipeline', run_name='__main__')\nfinally:\n"
               "    sys.stderr.write(open('/proc/self/io').read())\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", wrapper, "run", str(listing), "--out", str(out),
                           "--no-progress"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    took = time.monotonic() - started
    assert done.returncode == 1
    written = int(done.stderr.split("wchar: ")[1].split()[0])
    assert written < 20_000_000, f"{written:,} bytes written"
    assert took < 60, f"{took:.1f} s"
    entries = summary(out)["inputs"]
    assert len(entries) == 3000 and all(e["status"] == "failed" for e in entries)
    lines = (out / "progress.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(3000))


def test_a_file_name_cannot_forge_log_lines(tmp_path: Path) -> None:
    """A newline or a terminal escape in a file name is shown escaped in the text log, so it
    cannot start a line of its own or recolour the terminal."""
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "x\nERROR forged line \x1b[31m.mp4"
    bad.write_bytes(b"not a video" * 100)
    done = run_cli("run", str(folder), "--out", str(tmp_path / "out"), "--no-progress")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert not any(line.startswith("ERROR forged") for line in lines), done.stderr
    assert "\x1b" not in done.stderr
    assert "x\\nERROR forged line \\x1b[31m.mp4" in done.stderr


def test_a_truncated_recording_left_alone_still_fails_as_truncated(tmp_path: Path,
                                                                   recordings: dict[str, Path],
                                                                   ) -> None:
    """A half Matroska file that stopped changing long ago is not deferred for ever: it fails
    as truncated, as before."""
    whole = tmp_path / "whole.mkv"
    media.ffmpeg("-i", str(recordings["ts"]), "-c", "copy", str(whole))
    half = tmp_path / "half.mkv"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    old = time.time() - 600
    os.utime(half, (old, old))
    out = tmp_path / "out"
    done = run_cli("run", str(half), "--out", str(out), "--no-progress")
    assert done.returncode == 1
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "failed" and "truncated" in entry["error"]
