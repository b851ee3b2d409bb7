"""A video's `Sending` under its strategy: made once per video (for compact and frames, their one
ffmpeg pass: the proxy, the images). Copy's is here, the source's own chunks from `segment`;
compact's and frames' live in their modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pipeline import segment
from pipeline.send.compact import CompactSending
from pipeline.send.frames import FramesSending
from pipeline.send.media import ChunkMedia
from pipeline.send.strategy import Sending, Strategy
from pipeline.types import Chunk, Limits, Media, VideoInfo


def prepare(strategy: Strategy, info: VideoInfo, limits: Limits, folder: Path, *,
            keep_audio: bool = False) -> Sending:
    """What `strategy` sends for the probed video `info`; scratch files go in `folder`."""
    if strategy.name == "compact":
        return CompactSending(strategy, info, limits, folder)
    if strategy.name == "frames":
        return FramesSending(strategy, info, limits, folder)
    return CopySending(info, limits, folder, keep_audio=keep_audio)


class CopySending:
    """The source's chunks, stream-copied; MP4 sources' built in memory as they are sent."""

    def __init__(self, info: VideoInfo, limits: Limits, folder: Path, *,
                 keep_audio: bool) -> None:
        self.info = info
        self.source = info.path
        self._limits = limits
        self._folder = str(folder)
        self._options = segment.SegmentOptions(keep_audio=keep_audio)
        self._media = ChunkMedia(info.table)

    def chunks(self) -> list[Chunk]:
        return segment.split(self.info, self._limits, self._folder, self._options,
                             in_memory=True)

    @contextlib.contextmanager
    def open(self, chunk: Chunk) -> Iterator[Media]:
        with self._media.open(chunk) as media:
            yield media

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        return segment.resplit(chunk, limits, self._folder, self._options, source=self.info)
