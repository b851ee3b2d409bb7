"""What finding inputs meets in a watched folder: FIFOs, sockets, devices, folders it may not
read, manifests saved by Excel. Discovery opens nothing but regular files, never blocks, and
every input it cannot take is a failed entry that says why."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_support import REPO, by_source, run_cli, summary

from pipeline.batch import inputs

pytestmark = pytest.mark.integration

BOM = "\ufeff"


def test_a_fifo_without_an_extension_in_a_folder_is_never_opened(tmp_path: Path) -> None:
    """A folder holding only a FIFO named camdump (a camera's dump pipe): the run finishes,
    summary.json says the folder holds no video files; nothing waits on the FIFO."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    os.mkfifo(folder / "camdump")
    out = tmp_path / "out"
    done = run_cli("run", str(folder), "--out", str(out), "--no-progress", timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["error"] == f"{folder}: folder holds no video files"


def test_fifos_named_like_videos_or_given_by_name_fail_alone(small_video: Path,
                                                              tmp_path: Path) -> None:
    """A FIFO with a video extension in a folder, a FIFO and a character device given by name:
    each fails "not a regular file (a FIFO)" / "(a character device)"; the real video beside
    them is done."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(small_video, folder / "real.mp4")
    os.mkfifo(folder / "cam.mp4")
    os.mkfifo(folder / "camdump")
    given = tmp_path / "pipe"
    os.mkfifo(given)
    out = tmp_path / "out"
    done = run_cli("run", str(folder), str(given), "/dev/null", "--out", str(out),
                   "--no-progress", timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    entries = by_source(out)
    assert set(entries) == {"cam.mp4", "real.mp4", "pipe", "null"}
    assert entries["real.mp4"]["status"] == "done"
    assert entries["cam.mp4"]["error"] == f"{folder / 'cam.mp4'}: not a regular file (a FIFO)"
    assert entries["pipe"]["error"] == f"{given}: not a regular file (a FIFO)"
    assert entries["null"]["error"] == "/dev/null: not a regular file (a character device)"


def test_a_socket_named_like_a_video_in_a_folder_fails_alone(tmp_path: Path) -> None:
    """A UNIX socket named cam.mp4 among the inputs: "not a regular file (a socket)"."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "cam.mp4"))
        (source,) = inputs.expand([str(folder)])
    assert source.error == "not a regular file (a socket)"


@contextlib.contextmanager
def _shared_folder() -> Iterator[Path]:
    """A folder under /tmp that an unprivileged user may read and write (pytest's tmp_path is
    root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="vp-unprivileged-", dir="/tmp"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                path.chmod(0o777) if path.is_dir() else None
        shutil.rmtree(folder, ignore_errors=True)


def test_an_unreadable_subfolder_is_a_failed_input_named(small_video: Path) -> None:
    """Run as an unprivileged user (root reads everything): a subfolder it may not read fails
    "cannot read folder: permission denied", named; the video beside it is done; exit 1."""
    with _shared_folder() as shared:
        folder = shared / "incoming"
        (folder / "locked").mkdir(parents=True)
        shutil.copy(small_video, folder / "a.mp4")
        shutil.copy(small_video, folder / "locked" / "b.mp4")
        folder.chmod(0o755)
        (folder / "a.mp4").chmod(0o644)
        (folder / "locked").chmod(0o000)
        out = shared / "out"
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-m", "pipeline", "run", str(folder), "--out", str(out), "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
            env={**os.environ, "HOME": str(shared)})
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        entries = {e["source"]: e for e in summary(out)["inputs"]}
        assert entries[str(folder / "a.mp4")]["status"] == "done"
        locked = str(folder / "locked")
        assert entries[locked]["error"] == f"{locked}: cannot read folder: permission denied"
        assert len(entries) == 2


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_a_manifest_with_a_byte_order_mark_keeps_every_entry(tmp_path: Path,
                                                             suffix: str) -> None:
    """A manifest saved as "CSV UTF-8" (a byte-order mark first): its first entry is read like
    the others, not refused nor mangled."""
    names = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    body = {".txt": "\n".join(names) + "\n",
            ".csv": "path,note\n" + "".join(f"{n},x\n" for n in names),
            ".jsonl": "".join(json.dumps({"path": n}) + "\n" for n in names)}[suffix]
    manifest = tmp_path / f"list{suffix}"
    manifest.write_text(BOM + body, encoding="utf-8")
    assert inputs.expand([str(manifest)]) == [inputs.Source(n) for n in names]
