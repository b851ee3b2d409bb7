"""The copy strategy (the default): the source's own chunks, stream-copied at keyframes
(`segment.split`); an MP4 source's built in memory as they are sent, never written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipeline import segment
from pipeline.sampling import clarifai_grid
from pipeline.send import costs
from pipeline.send.media import ChunkMedia
from pipeline.send.strategy import Cost, PreparedChunks, Skipper, Strategy, Travel, setting
from pipeline.types import Chunk, Limits, LocalVideo, Plan, VideoInfo


@dataclass(frozen=True, kw_only=True)
class Copy(Strategy):
    """The video's own chunks."""

    name: ClassVar[str] = "copy"
    summary: ClassVar[str] = "the video's own chunks"
    travel: ClassVar[Travel] = Travel.BY_REFERENCE
    lists_cuts: ClassVar[bool] = True
    cpu_per_hour: ClassVar[float] = 4.0  # reading sample tables and copying

    keep_audio: bool = setting(False, "--keep-audio", "keep the audio track in chunks "
                               "(default: dropped; the models are visual)")

    @property
    def keeps_audio(self) -> bool:
        return self.keep_audio

    def key(self, sample_ms: int) -> tuple[tuple[str, object], ...]:
        """Empty: copy's keys are as they were before strategies existed (those runs stay done);
        keep_audio has its own place in the run key."""
        return ()

    def prepare(self, info: VideoInfo, limits: Limits, folder: Path,
                sample_ms: int) -> PreparedChunks:
        return CopyChunks(info, limits, folder, keep_audio=self.keep_audio)

    def cost(self, info: VideoInfo, plan: Plan, limits: Limits, sample_ms: int) -> Cost:
        sent = info.size_bytes if plan.whole else sum(c.expected_bytes for c in plan.chunks)
        # Clarifai samples each chunk from its own start, and bills what it samples.
        billed = sum(clarifai_grid(c.duration, sample_ms).count for c in plan.chunks)
        return Cost(self.name, len(plan.chunks), sent, billed,
                    costs.cpu_seconds(info, self.cpu_per_hour, decodes=False), not plan.whole)


class CopyChunks:
    """The source's chunks, stream-copied; MP4 sources' built in memory as they are sent."""

    def __init__(self, info: VideoInfo, limits: Limits, folder: Path, *,
                 keep_audio: bool) -> None:
        self.info = info
        self.source = info.path
        self._limits = limits
        self._folder = str(folder)
        self._options = segment.SegmentOptions(keep_audio=keep_audio)
        self._media = ChunkMedia(info.table)
        self.skipper: Skipper | None = None  # copy sends every chunk as it is

    def chunks(self) -> list[Chunk]:
        return segment.split(self.info, self._limits, self._folder, self._options,
                             in_memory=True)

    @contextlib.contextmanager
    def open(self, chunk: Chunk) -> Iterator[LocalVideo]:
        with self._media.open(chunk) as media:
            yield media

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        return segment.resplit(chunk, limits, self._folder, self._options, source=self.info)
