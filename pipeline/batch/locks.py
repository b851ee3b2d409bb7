"""Per-video locks, so that two runs overlapping on one --out (cron firing while the last run is
still going, or two Dask clients) never work on the same video at once.

A lock is `flock` on DIR/.locks/VIDEO_ID.lock. `flock` belongs to the open file, so it also
excludes two threads of one process, and the kernel drops it when the holder dies (even by
SIGKILL): a stale lock file is never a held lock. On NFS, Linux maps `flock` to POSIX byte-range
locks, which NFSv4 servers honour across clients; a shared --out for Dask relies on that."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from pipeline.batch.stopping import StopCheck
from pipeline.errors import Interrupted, LockedError

_POLL_S = 0.2


class VideoLock:
    """An exclusive lock on one video's output folder; `acquire(wait)` raises LockedError when
    another run holds it (at once, or after `wait` seconds)."""

    def __init__(self, out: str | Path, video_id: str) -> None:
        self.path = Path(out) / ".locks" / f"{video_id}.lock"
        self.video_id = video_id
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0, stop: StopCheck | None = None) -> None:
        """Take the lock, waiting up to `wait` seconds for it (less if `stop` is set)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop.is_set():
                    os.close(fd)
                    raise Interrupted(f"stopped while waiting for {self.video_id}'s lock") \
                        from None
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockedError(self._message(holder, wait)) from None
                time.sleep(_POLL_S)
        _write_holder(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VideoLock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def _message(self, holder: str, wait: float) -> str:
        waited = f" after waiting {wait:g} s" if wait > 0 else ""
        return f"another run ({holder or 'unknown'}) is working on {self.video_id}{waited}"


def _write_holder(fd: int) -> None:
    """Who holds the lock, for the message another run prints; informative only."""
    text = f"pid {os.getpid()} on {socket.gethostname()}".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
