"""A read-only, seekable file over ranged reads of a remote object, so that code that reads
files (the MP4 box walk) reads only the bytes it needs from storage: box headers and `moov`,
never the media data between them."""

from __future__ import annotations

import io
from collections.abc import Callable

# Reads a byte range [start, end] (inclusive, as HTTP says it).
Fetch = Callable[[int, int], bytes]


class RangeFile(io.RawIOBase):
    """`size` bytes, each read one ranged request; wrap in `io.BufferedReader` so that small
    reads are gathered (`open_ranges`). `fetched` counts the bytes that came over the wire."""

    def __init__(self, fetch: Fetch, size: int) -> None:
        super().__init__()
        self._fetch = fetch
        self.size = size
        self.pos = 0
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.pos >= self.size or not len(buffer):
            return 0
        end = min(self.pos + len(buffer), self.size) - 1
        data = self._fetch(self.pos, end)
        if len(data) != end - self.pos + 1:
            raise OSError(f"asked for {end - self.pos + 1} bytes at {self.pos}, got {len(data)}")
        self.fetched += len(data)
        memoryview(buffer)[:len(data)] = data
        self.pos += len(data)
        return len(data)


def open_ranges(fetch: Fetch, size: int, buffer: int = 64 * 1024) -> tuple[io.BufferedReader,
                                                                           RangeFile]:
    """A buffered file over `fetch` (64 KiB reads: the head of a faststart MP4 in one), and the
    raw file that counts what was fetched."""
    raw = RangeFile(fetch, size)
    return io.BufferedReader(raw, buffer_size=buffer), raw
