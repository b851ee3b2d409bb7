"""A chunk's media, opened for one request: a chunk file is sent from where it lies; a chunk
described by the source's samples (`Chunk.packets`) is built in memory from the source's sample
table as it is sent, so a run needs no scratch copy of the video, only the chunks in flight."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pipeline.media import mp4write
from pipeline.types import Chunk, LocalVideo, SampleTable, VideoBytes, VideoFile


class ChunkMedia:
    """Opens the chunks of one source (whose sample table, if any, builds the in-memory ones)."""

    def __init__(self, table: SampleTable | None) -> None:
        self._table = table

    @contextlib.contextmanager
    def open(self, chunk: Chunk) -> Iterator[LocalVideo]:
        if chunk.packets is None:
            yield VideoFile(chunk.path)
            return
        yield VideoBytes(self.build(chunk))

    def build(self, chunk: Chunk) -> bytes:
        """The in-memory chunk's bytes: the same as `split` writes for it."""
        assert chunk.packets is not None and self._table is not None
        fd = os.open(chunk.path, os.O_RDONLY)
        try:
            return mp4write.chunk_bytes(fd, self._table, *chunk.packets)
        finally:
            os.close(fd)
