"""Files still being written: a recording growing in a watched folder is never processed in part.

The settle rule. A local source is taken once it has been unchanged (size and modification time)
for `settle_s` seconds, unless its container says it is finished and whole (`containers.complete`:
an MP4 with its index, a Matroska file of known size, an AVI). A file modified more recently is
watched until it has been still that long; if it changes meanwhile, it is deferred: a later run
takes it, whole. A file that changes between the start of its run and the moment its timeline
would be written is deferred too, whatever its container, and its partial result is never
marked done. MPEG-TS from a camera and live Matroska recordings (no final size in their header)
are the files this is for: nothing in them says where they end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.batch.stopping import StopCheck
from pipeline.errors import Interrupted, StillBeingWritten
from pipeline.media import containers

_POLL_S = 0.2


@dataclass(frozen=True)
class FileState:
    """What tells a file that is being written from one that is not."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileState:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    def age(self, now: float) -> float:
        """Seconds since the file was last modified (0 for a time in the future)."""
        return max(0.0, now - self.mtime_ns / 1e9)


def settled(path: str, settle_s: float, stop: StopCheck, *,
            clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> FileState:
    """The file's state once it counts as settled; StillBeingWritten if it changes while it is
    watched (at most `settle_s` seconds)."""
    first = FileState.of(path)
    if settle_s <= 0 or first.age(clock()) >= settle_s or _needs_no_watch(path, first):
        return first
    while (left := settle_s - first.age(clock())) > 0:
        if stop.is_set():
            raise Interrupted("stopped while waiting for a file to settle")
        sleep(min(_POLL_S, left))
        now = FileState.of(path)
        if now != first:
            raise StillBeingWritten(path, _grew(first, now, settle_s))
    return first


def _needs_no_watch(path: str, state: FileState) -> bool:
    """Its container says it is whole, or it is refused whatever comes next (empty, or text:
    probe says so at once rather than after the settle time)."""
    return state.size == 0 or containers.complete(path) or containers.is_text(path)


def unchanged(path: str, before: FileState, settle_s: float) -> None:
    """Raise StillBeingWritten if the file is not as it was when its run started."""
    try:
        now = FileState.of(path)
    except OSError:
        raise StillBeingWritten(path, "was removed or replaced while it was processed; a later "
                                "run takes it if it is back") from None
    if now != before:
        raise StillBeingWritten(path, f"changed while it was processed ({before.size:,} -> "
                                f"{now.size:,} bytes); it is taken once unchanged for "
                                f"{settle_s:g} s")


def _grew(first: FileState, now: FileState, settle_s: float) -> str:
    change = (f"grew from {first.size:,} to {now.size:,} bytes" if now.size != first.size
              else "was modified")
    return (f"still being written ({change} while watched); it is taken once unchanged for "
            f"{settle_s:g} s")
