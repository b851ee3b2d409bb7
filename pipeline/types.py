"""The small frozen values that travel between pipeline stages."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Literal, NamedTuple, get_args

import numpy as np

from pipeline.errors import ConfigError

# The vocabulary, defined once: how requests carry a chunk, and which backend answers.
Mode = Literal["bytes", "url"]
MODES: tuple[Mode, ...] = get_args(Mode)
BackendName = Literal["local", "clarifai"]
BACKENDS: tuple[BackendName, ...] = get_args(BackendName)

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
    """One compressed frame, as a row: display time and duration in stream ticks, bytes,
    keyframe flag. Streams keep their packets as columns (`Packets`); a row is for reading one."""

    pts: int
    duration: int
    size: int
    key: bool

    @property
    def end(self) -> int:
        return self.pts + self.duration


@dataclass(frozen=True, eq=False)
class Packets:
    """One stream's packets in decode order, as columns (int64 ticks and bytes, bool keys):
    about 25 bytes a packet where a Python tuple costs ~470, so a day of 60 fps video (5.2 M
    packets) is planned in ~130 MB. Indexing gives a `Packet` row."""

    pts: np.ndarray
    duration: np.ndarray
    size: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, rows: Iterable[tuple[int, int, int, bool]]) -> Packets:
        table = list(rows)
        if not table:
            return cls.empty()
        pts, duration, size, key = zip(*table, strict=True)
        return cls(np.array(pts, np.int64), np.array(duration, np.int64),
                   np.array(size, np.int64), np.array(key, bool))

    @classmethod
    def empty(cls) -> Packets:
        none = np.zeros(0, np.int64)
        return cls(none, none, none, np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.pts)

    def __getitem__(self, i: int) -> Packet:
        return Packet(int(self.pts[i]), int(self.duration[i]), int(self.size[i]),
                      bool(self.key[i]))

    def __iter__(self) -> Iterator[Packet]:
        return (self[i] for i in range(len(self)))

    @property
    def total_bytes(self) -> int:
        return int(self.size.sum())


@dataclass(frozen=True)
class PacketScan:
    """The packets of the video stream in decode order, plus kept audio packets, of one file."""

    video: Packets
    audio: Packets = field(default_factory=Packets.empty)
    time_base: Fraction = Fraction(1, 1000)
    audio_time_base: Fraction = Fraction(1, 1000)

    def seconds(self, ticks: int) -> Fraction:
        return ticks * self.time_base

    @cached_property
    def origin(self) -> Fraction:
        """Source time of the first displayed video frame: global time zero."""
        return self.seconds(int(self.video.pts.min()))

    @cached_property
    def end_ticks(self) -> int:
        return int((self.video.pts + self.video.duration).max())

    @cached_property
    def end(self) -> Fraction:
        return self.seconds(self.end_ticks)

    @cached_property
    def keyframes(self) -> list[Fraction]:
        return [self.seconds(int(t)) for t in np.sort(self.video.pts[self.video.key])]


@dataclass(frozen=True, eq=False)
class SampleTable:
    """A video track's samples in decode order, from `moov` alone: what ffprobe's packet listing
    would say (times in the track's own ticks) without reading the media data. Columns are
    int64 numpy arrays (`keys` bool)."""

    timescale: int
    dts: np.ndarray
    pts: np.ndarray
    durations: np.ndarray
    sizes: np.ndarray
    keys: np.ndarray
    offsets: np.ndarray  # where each sample's bytes start in the file
    stsd: bytes  # the sample description box's body (codec configuration), copied into chunks
    tkhd: bytes  # the track header's body (display size, rotation matrix)
    language: int  # mdhd's packed ISO-639 code

    @property
    def data_end(self) -> int:
        """The largest offset + size any sample reaches."""
        return int((self.offsets + self.sizes).max()) if len(self.sizes) else 0

    @property
    def packets(self) -> Packets:
        return Packets(self.pts, self.durations, self.sizes, self.keys)


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
    """A chunk ready to send; `start` is its first frame's time on the source timeline.

    A chunk is a file at `path`, or, when `packets` is set, the source MP4's video samples
    [first, end) at `path`, built in memory (media.mp4write) when it is sent: the same bytes
    `split` writes, without a scratch copy of the video."""

    index: int
    path: str
    start: Fraction  # seconds from the source's first frame
    end: Fraction
    size_bytes: int
    frames: int
    reencoded: bool = False
    packets: tuple[int, int] | None = None
    # --skip-similar: the video's instants this chunk carries, ascending (its n-th frame or
    # image is instant instants[n]); None: every instant of [start, end).
    instants: tuple[int, ...] | None = None

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


# -- what one request carries for a chunk: each payload its own type -----------------------
@dataclass(frozen=True)
class VideoFile:
    """A chunk file, sent from where it lies (read whole: a chunk is at most a request's size)."""

    path: str

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read()


@dataclass(frozen=True, repr=False)
class VideoBytes:
    """A chunk built in memory (an MP4 of the source's or the proxy's samples)."""

    data: bytes

    def read(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"VideoBytes({len(self.data)} bytes)"


@dataclass(frozen=True, repr=False)
class VideoUrl:
    """A URL the API fetches itself. `label` is the name messages use (s3://bucket/key, or the
    URL without its query string); `refresh`, if given, stages the chunk again if need be and
    returns a fresh URL (the API could not fetch the first)."""

    url: str
    label: str
    refresh: Callable[[], str] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"VideoUrl({self.label})"  # never a URL's signature


@dataclass(frozen=True, repr=False)
class ImageBatch:
    """A frames batch: its JPEG images in time order (image n is the chunk's instant n), sent
    as image inputs."""

    images: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"ImageBatch({len(self.images)} images)"


Media = VideoFile | VideoBytes | VideoUrl | ImageBatch
LocalVideo = VideoFile | VideoBytes  # what can be uploaded, or decoded here


class Concept(NamedTuple):
    """One concept's value in one frame. A tuple, like Packet: a ten-hour timeline holds
    720,000 of them (a frozen dataclass takes ~3x as long to make)."""

    id: str
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled frame's concepts at `time_ms`, on the clock its ChunkResult names; a frame
    that was not sent (--skip-similar) carries the concepts of the frame at `carried_from_ms`."""

    time_ms: int
    concepts: tuple[Concept, ...]
    carried_from_ms: int | None = None


# Which clock a result's frame times are on: "chunk" (ms from the chunk's first frame, as an API
# answers for a video), "instants" (n: the chunk's n-th instant of the video's sampling grid, as
# the local model and an image batch answer) or "source" (ms from the source's first frame, as
# the timeline holds them). merge.place is the one place any of them becomes "source".
Clock = Literal["chunk", "instants", "source"]


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


@dataclass(frozen=True)
class S3Name:
    """s3://bucket/key; for a staging place the key is a prefix (maybe empty)."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, what: str = "--stage") -> S3Name:
        if not text.lower().startswith("s3://"):
            raise ConfigError(f"{what} takes s3://BUCKET/PREFIX, not {text!r}")
        bucket, _, key = text[5:].partition("/")
        if not bucket or "@" in bucket or ":" in bucket:
            raise ConfigError(f"{what} takes s3://BUCKET/PREFIX, not {text!r}")
        return cls(bucket, key)

    def child(self, *parts: str) -> S3Name:
        return S3Name(self.bucket, "/".join(p.strip("/") for p in (self.key, *parts)
                                             if p.strip("/")))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
