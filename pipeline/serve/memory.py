"""`serve` gives memory back to the system after large requests.

Two things held it (measured with `tests/serve_memory.py`):
- glibc serves a large allocation from a thread's arena once one as large has been freed (its
  mmap threshold adapts), and an arena keeps what is freed: six 9000x9000 images, decoded one
  after another on six threads, held 1.7 GB until the process ended;
- an error raised inside an `except` block binds its frame in a cycle, and the frames up the
  stack with it (the request and its bytes), until the garbage collector runs; gRPC's
  received message is many small allocations that the allocator keeps. Eight 127 MB requests
  held 956 MB after they were answered."""

from __future__ import annotations

import ctypes
import gc
import threading
import time

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_SETTLE = 0.2  # seconds after a request, so that its handler has returned


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its allocator is not the one described above
        return None


def map_large_allocations() -> None:
    """Give every allocation over 1 MiB a mapping of its own, returned when freed (a fixed
    threshold also stops glibc adapting it). For the serve process only: it is process-wide."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def give_back() -> None:
    """Collect garbage cycles, then return the allocator's free pages (~35 ms in all)."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class Janitor:
    """Runs `give_back` in its own thread shortly after a large request is answered; requests
    that end together are cleaned up after once."""

    def __init__(self) -> None:
        self._due = threading.Event()
        self._stopped = False
        threading.Thread(target=self._run, name="serve-janitor", daemon=True).start()

    def after_large_request(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopped = True
        self._due.set()

    def _run(self) -> None:
        while self._due.wait() and not self._stopped:
            time.sleep(_SETTLE)
            self._due.clear()
            give_back()
