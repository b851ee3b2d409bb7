"""Batches and scheduled jobs: inputs of every kind, reruns that skip, changed sources, resuming,
URLs, overlapping runs and their locks."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_support import (
    MAX_BYTES,
    by_source,
    checkpoints,
    cli,
    copy_folder,
    make_video,
    summary,
    wait_for,
)

from pipeline._cli.main import main
from pipeline.batch import download, identity, inputs
from pipeline.batch.locks import VideoLock
from pipeline.errors import InputError, LockedError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batch_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 12 s videos of different content (3 chunks each at MAX_BYTES), one in a subfolder."""
    root = tmp_path_factory.mktemp("batch")
    make_video(root / "a.mp4", hue=0)
    make_video(root / "b.mp4", hue=120)
    (root / "sub").mkdir()
    make_video(root / "sub" / "c.mp4", hue=240)
    return root


def run(*args: str) -> int:
    return main(["run", *args, "--max-bytes", MAX_BYTES, "--no-progress"])


# -- inputs -----------------------------------------------------------------------------------

def test_folder_finds_videos_by_extension_and_by_content(tmp_path: Path,
                                                         batch_folder: Path) -> None:
    """A folder is searched recursively; a video without an extension is found by its header."""
    shutil.copy(batch_folder / "a.mp4", tmp_path / "camera_dump")
    (tmp_path / "notes").write_text("not a video")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    shutil.copy(batch_folder / "b.mp4", tmp_path / "deep" / "er" / "B.MOV")
    found = [Path(s.path).name for s in inputs.expand([str(tmp_path)])]
    assert sorted(found) == ["B.MOV", "camera_dump"]


def test_manifests_txt_csv_jsonl_and_dedup(tmp_path: Path, batch_folder: Path) -> None:
    """.txt, .csv (path column) and .jsonl manifests resolve relative paths next to themselves;
    the same file reached twice, and the same URL, are processed once."""
    a, b = batch_folder / "a.mp4", batch_folder / "b.mp4"
    (tmp_path / "list.txt").write_text(f"# nightly\n{a}\n\n{os.path.relpath(b, tmp_path)}\n")
    (tmp_path / "list.csv").write_text(f"title,path\nfirst,{a}\nthird,https://x.test/v.mp4?s=1\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"url": "https://x.test/v.mp4?s=1"}) + "\n"
                                         + json.dumps(str(b)) + "\n")
    sources = inputs.expand([str(tmp_path / n) for n in ("list.txt", "list.csv", "list.jsonl")]
                            + [str(batch_folder)])
    names = [Path(s.path).name if not s.is_url else s.display for s in sources]
    assert names == ["a.mp4", "b.mp4", "https://x.test/v.mp4", "c.mp4"]
    assert all(s.error is None for s in sources)


def test_csv_manifest_without_path_column_is_that_inputs_error(tmp_path: Path) -> None:
    """A .csv with no path/url column fails as one input with a message naming the problem."""
    (tmp_path / "bad.csv").write_text("title,when\nx,today\n")
    (source,) = inputs.expand([str(tmp_path / "bad.csv")])
    assert source.error is not None and "no column named path" in source.error


def test_video_id_stable_and_content_sensitive(tmp_path: Path, batch_folder: Path) -> None:
    """Same file -> same id; same name with different content -> a different id."""
    one = copy_folder(batch_folder, tmp_path / "one")
    first = identity.video_id(str(one / "a.mp4"))
    assert identity.video_id(str(one / "a.mp4")) == first
    shutil.copy2(batch_folder / "b.mp4", one / "a.mp4")
    assert identity.video_id(str(one / "a.mp4")) != first


# -- URLs ---------------------------------------------------------------------------------------

@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stops reading at the size cap breaks the pipe; that is the point


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_url_input_is_downloaded_and_its_query_never_shown(
        tmp_path: Path, batch_folder: Path, http_root: tuple[Path, str]) -> None:
    """A URL is streamed to a temporary file and processed; its query string (a signature) is in
    no output; a missing one fails alone with the status, without the query string."""
    root, base = http_root
    shutil.copy(batch_folder / "a.mp4", root / "a.mp4")
    out = tmp_path / "out"
    secret = "X-Amz-Signature=s3cr3t"
    assert run(f"{base}/a.mp4?{secret}", f"{base}/gone.mp4?{secret}", "--out", str(out)) == 1
    entries = {e["source"]: e for e in summary(out)["inputs"]}
    assert entries[f"{base}/a.mp4"]["status"] == "done"
    assert entries[f"{base}/gone.mp4"]["status"] == "failed"
    assert "HTTP 404" in entries[f"{base}/gone.mp4"]["error"]
    timeline = next(out.glob("a-*/timeline.json"))
    assert json.loads(timeline.read_text())["source"]["path"] == f"{base}/a.mp4"
    for path in out.rglob("*"):
        assert not path.is_file() or secret not in path.read_text(errors="replace")


def test_download_over_the_cap_is_refused(tmp_path: Path, batch_folder: Path,
                                          http_root: tuple[Path, str]) -> None:
    """A download larger than the cap stops early with an InputError and leaves no file."""
    root, base = http_root
    shutil.copy(batch_folder / "a.mp4", root / "a.mp4")
    with pytest.raises(InputError, match="over the"):
        download.download(f"{base}/a.mp4?k=v", str(tmp_path), max_bytes=10_000, timeout=30)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


# -- reruns ---------------------------------------------------------------------------------------

def test_rerun_skips_everything_fast_and_sends_nothing(tmp_path: Path, batch_folder: Path) -> None:
    """A rerun over the same inputs probes and sends nothing, in under 10% of the first run's
    time; a changed source is then redone alone; a half-done video resumes its missing chunks."""
    videos = copy_folder(batch_folder, tmp_path / "videos")
    out = tmp_path / "out"
    started = time.monotonic()
    assert run(str(videos), "--out", str(out)) == 0
    first = time.monotonic() - started
    assert summary(out)["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert all(e["chunks"] >= 3 and e["requests"] == e["chunks"]
               for e in summary(out)["inputs"])
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name != "summary.json"}

    started = time.monotonic()
    assert run(str(videos), "--out", str(out)) == 0
    rerun = time.monotonic() - started
    assert rerun < 0.1 * first, (rerun, first)
    assert summary(out)["counts"] == {"done": 0, "skipped": 3, "failed": 0}
    assert summary(out)["requests"] == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    make_video(videos / "b.mp4", hue=60)  # same name, new content
    assert run(str(videos), "--out", str(out)) == 0
    entries = by_source(out)
    assert entries["b.mp4"]["status"] == "done" and entries["b.mp4"]["requests"] >= 3
    assert [entries[n]["status"] for n in ("a.mp4", "c.mp4")] == ["skipped", "skipped"]


def test_half_done_video_resumes_from_its_checkpoints(tmp_path: Path, batch_folder: Path) -> None:
    """With the timeline and one checkpoint gone, a rerun sends that one chunk and writes the
    same timeline.json as before, byte for byte."""
    videos = copy_folder(batch_folder, tmp_path / "videos")
    out = tmp_path / "out"
    assert run(str(videos / "a.mp4"), "--out", str(out)) == 0
    (vdir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    before = (vdir / "timeline.json").read_bytes()
    (vdir / "timeline.json").unlink()
    checkpoints(out)[1].unlink()
    assert run(str(videos / "a.mp4"), "--out", str(out)) == 0
    (entry,) = summary(out)["inputs"]
    assert (entry["status"], entry["requests"], entry["resumed"]) == (
        "done", 1, entry["chunks"] - 1)
    assert (vdir / "timeline.json").read_bytes() == before


# -- overlapping runs ------------------------------------------------------------------------------

def test_lock_excludes_a_second_holder_and_can_wait() -> None:
    """A held video lock refuses a second holder at once (naming the holder), or after waiting."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"lock-test-{os.getpid()}"
    first = VideoLock(out, "vid")
    first.acquire()
    try:
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            VideoLock(out, "vid").acquire()
        started = time.monotonic()
        with pytest.raises(LockedError, match="after waiting"):
            VideoLock(out, "vid").acquire(wait=0.4)
        assert time.monotonic() - started >= 0.4
        threading.Timer(0.3, first.release).start()
        with VideoLock(out, "vid") as second:
            second.acquire(wait=5)
    finally:
        first.release()
        shutil.rmtree(out, ignore_errors=True)


def test_two_overlapping_runs_share_the_work_without_duplicates(
        tmp_path: Path, batch_folder: Path) -> None:
    """A second run started while the first works on --out skips the videos the first holds
    (and says so); together they send every chunk exactly once and every video is done."""
    videos = copy_folder(batch_folder, tmp_path / "videos")
    out = tmp_path / "out"
    args = ["run", str(videos), "--out", str(out), "--max-bytes", MAX_BYTES, "--no-progress",
            "--concurrency", "1"]
    first = cli(*args)
    try:
        wait_for(lambda: len(checkpoints(out)) >= 1, 60, "the first run's first checkpoint")
        second = cli(*args)
        _, err2 = second.communicate(timeout=120)
        _, err1 = first.communicate(timeout=120)
    finally:
        first.kill()
    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    assert "another run (pid" in err2
    requests = sum(int(line.rsplit("(", 1)[1].split()[2]) for line in (err1 + err2).splitlines()
                   if ": done (" in line)
    chunks = sum(len(json.loads(p.read_text())["chunks"]) for p in out.glob("*/timeline.json"))
    assert len(list(out.glob("*/timeline.json"))) == 3
    assert requests == chunks
