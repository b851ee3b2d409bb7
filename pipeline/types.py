"""The small frozen values that travel between pipeline stages."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Literal, NamedTuple

Mode = Literal["bytes", "url"]

# Seed page limits (decimal units): bytes 10 MB, URL 80 MB, both 10 minutes.
DEFAULT_MAX_BYTES: dict[str, int] = {"bytes": 10_000_000, "url": 80_000_000}
DEFAULT_MAX_SECONDS = 600


def to_ms(seconds: Fraction) -> int:
    """Exact seconds to integer milliseconds (rounded half up, never float)."""
    return math.floor(seconds * 1000 + Fraction(1, 2))


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    mode: Mode = "bytes"
    max_bytes: int = DEFAULT_MAX_BYTES["bytes"]
    max_duration_ms: int = DEFAULT_MAX_SECONDS * 1000

    @classmethod
    def for_mode(
        cls, mode: Mode, max_bytes: int | None = None, max_seconds: float | None = None
    ) -> Limits:
        seconds = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
        return cls(
            mode=mode,
            max_bytes=DEFAULT_MAX_BYTES[mode] if max_bytes is None else max_bytes,
            max_duration_ms=int(round(seconds * 1000)),
        )

    @property
    def max_duration(self) -> Fraction:
        return Fraction(self.max_duration_ms, 1000)

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "max_bytes": self.max_bytes,
                "max_duration_ms": self.max_duration_ms}


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a container, as ffprobe describes it."""

    index: int
    kind: str  # video | audio | subtitle | data | attachment
    codec: str
    time_base: Fraction
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    rotation: int = 0
    duration_ms: int | None = None
    bit_rate: int | None = None
    is_cover_art: bool = False
    frame_count: int | None = None  # as the container's index declares it (MP4/MOV do)


class Packet(NamedTuple):
    """One compressed frame: display time and duration in stream ticks, bytes, keyframe flag.

    Ticks (integers) rather than Fractions, and a tuple rather than a dataclass: a 30-minute
    video has 54,000 packets; seconds are `ticks * time_base`."""

    pts: int
    duration: int
    size: int
    key: bool

    @property
    def end(self) -> int:
        return self.pts + self.duration


@dataclass(frozen=True)
class PacketScan:
    """The packets of the video stream in decode order, plus kept audio packets, of one file."""

    video: tuple[Packet, ...]
    audio: tuple[Packet, ...] = ()
    time_base: Fraction = Fraction(1, 1000)
    audio_time_base: Fraction = Fraction(1, 1000)

    def seconds(self, ticks: int) -> Fraction:
        return ticks * self.time_base

    @cached_property
    def origin(self) -> Fraction:
        """Source time of the first displayed video frame: global time zero."""
        return self.seconds(min(p.pts for p in self.video))

    @cached_property
    def end_ticks(self) -> int:
        return max(p.pts + p.duration for p in self.video)

    @cached_property
    def end(self) -> Fraction:
        return self.seconds(self.end_ticks)

    @cached_property
    def keyframes(self) -> list[Fraction]:
        return sorted(self.seconds(p.pts) for p in self.video if p.key)


@dataclass(frozen=True)
class SampleTable:
    """A video track's samples in decode order, from `moov` alone: what ffprobe's packet listing
    would say (times in the track's own ticks) without reading the media data."""

    timescale: int
    dts: list[int]
    pts: list[int]
    durations: list[int]
    sizes: list[int]
    keys: list[bool]
    offsets: list[int]  # where each sample's bytes start in the file
    stsd: bytes  # the sample description box's body (codec configuration), copied into chunks
    tkhd: bytes  # the track header's body (display size, rotation matrix)
    language: int  # mdhd's packed ISO-639 code

    @property
    def data_end(self) -> int:
        """The largest offset + size any sample reaches."""
        return max((o + s for o, s in zip(self.offsets, self.sizes, strict=True)), default=0)


@dataclass(frozen=True)
class VideoInfo:
    """What probing one file found: container, size, duration, streams, and its packets."""

    path: str
    size_bytes: int
    duration_ms: int
    container: str
    bit_rate: int | None
    streams: tuple[StreamInfo, ...]
    scan: PacketScan | None = field(default=None, compare=False, repr=False)
    # The MP4 sample table the scan came from, when it did: chunks can then be written directly.
    table: SampleTable | None = field(default=None, compare=False, repr=False)

    @property
    def video(self) -> StreamInfo:
        return next(s for s in self.streams if s.kind == "video" and not s.is_cover_art)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == "audio"), None)


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk of a plan: a run of whole keyframe intervals, by decode-order packet index."""

    index: int
    first_packet: int
    end_packet: int  # exclusive
    start: Fraction  # first displayed frame, source clock, seconds
    end: Fraction  # start of the next chunk (or end of the stream)
    expected_bytes: int
    reencode: bool = False  # a keyframe interval alone exceeds the limits

    @property
    def frames(self) -> int:
        return self.end_packet - self.first_packet

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    """How one video is cut: whole (fits as it is) or a list of chunks."""

    limits: Limits
    whole: bool
    chunks: tuple[PlannedChunk, ...]
    origin: Fraction
    total_bytes: int
    reason: str = ""

    @property
    def lower_bound(self) -> int:
        return max(1, math.ceil(self.total_bytes / self.limits.max_bytes))


@dataclass(frozen=True)
class Chunk:
    """A chunk file ready to send; `start` is its first frame's time on the source timeline."""

    index: int
    path: str
    start: Fraction  # seconds from the source's first frame
    end: Fraction
    size_bytes: int
    frames: int
    reencoded: bool = False

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


class Concept(NamedTuple):
    """One concept's value in one frame. A tuple, like Packet: a ten-hour timeline holds
    720,000 of them (a frozen dataclass takes ~3x as long to make)."""

    id: str
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled frame's concepts at `time_ms`, on the clock its ChunkResult names."""

    time_ms: int
    concepts: tuple[Concept, ...]


# Which clock a result's frame times are on: "chunk" (ms from the chunk's first frame, as an API
# answers) or "source" (ms from the source's first frame, as the timeline holds them).
Clock = Literal["chunk", "source"]


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str


@dataclass(frozen=True)
class ChunkResult:
    """The answer for one chunk: its frames, on `clock`, and the requests it took."""

    index: int
    frames: tuple[Frame, ...]
    attempts: int = 1
    clock: Clock = "chunk"
