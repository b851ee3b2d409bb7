"""A strategy: what the requests for one video carry (`--strategy`), and everything that follows
from that choice. Each strategy is one class (`send.copy.Copy`, `send.compact.Compact`,
`send.frames.Frames`), registered once (`send.strategies.STRATEGIES`), from which the command
line's choices and options and `plan`'s cost table are made. A strategy owns:

- its settings: dataclass fields declared with `setting()` (flag, help, range);
- its part of the run key (`key`): a change of it redoes a video;
- how it prepares a video (`prepare`): its `PreparedChunks`, the video's chunks and their media;
- what it costs (`cost`), for `plan`;
- how its requests travel (`travel`): by reference, staged, or always as bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from pipeline import skip, validate
from pipeline.types import Chunk, Limits, Media, Plan, VideoInfo


class Travel(enum.Enum):
    """How a strategy's requests reach the API (URL mode, to an API: `--mode url`)."""

    BY_REFERENCE = "the source's own URL when it fits as it is; else staged, or bytes"
    STAGED = "staged in storage and sent by URL in URL mode; else bytes"
    BYTES = "always as bytes (images: a few MB a request)"


T = TypeVar("T")


def setting(default: T, flag: str, help: str, *, low: float | None = None,
            high: float | None = None, metavar: str | None = None) -> T:
    """A strategy's setting: its default, the flag that sets it (with VIDEO_PIPELINE_<NAME>),
    its help and its range travel with the field; the command line's options are made from
    these (`_cli.options`)."""
    return dataclasses.field(default=default, metadata={
        "flag": flag, "help": help, "low": low, "high": high, "metavar": metavar})


@dataclass(frozen=True)
class Cost:
    """One strategy's cost for one video; `estimated` when bytes are not known exactly."""

    strategy: str
    requests: int
    bytes: int
    frames_billed: int
    cpu_seconds: float
    estimated: bool

    def as_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy, "requests": self.requests, "bytes": self.bytes,
                "frames_billed": self.frames_billed, "client_cpu_s": round(self.cpu_seconds, 2),
                "estimated": self.estimated}


class Skipper(Protocol):
    """A video's prepared chunks when it skips (--skip-similar): its rules and signatures, and
    the chunks that carry a set of its instants."""

    rules: skip.Rules

    def signatures(self) -> skip.Signatures:
        """The signatures the strategy's one pass wrote."""
        ...

    def carrying(self, instants: Sequence[int], first_index: int) -> list[Chunk]:
        """Chunks (numbered from `first_index`) that carry exactly `instants` (ascending),
        each within the limits."""
        ...


class PreparedChunks(Protocol):
    """One video's chunks under a strategy, and what a request carries for each."""

    source: str  # the file the in-memory chunks are cut from (the source, the proxy, ...)
    skipper: Skipper | None  # set when the video skips similar frames

    def chunks(self) -> list[Chunk]:
        """The video's chunks, each verified against the limits."""
        ...

    def open(self, chunk: Chunk) -> contextlib.AbstractContextManager[Media]:
        """The chunk's media for one request."""
        ...

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        """`chunk` cut again under `limits` (the API said it was too large); times kept."""
        ...


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """What a strategy is; the subclasses hold its settings as fields."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    travel: ClassVar[Travel]
    lists_cuts: ClassVar[bool] = False  # `plan` shows its chunk list (copy's cuts of the source)
    exact_decode: ClassVar[bool] = False  # its chunks' neighbouring frames are whole intervals
    # apart: the local model decodes every frame, never the nearest reference frame

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            meta = field.metadata
            if meta.get("low") is not None:
                validate.at_least(meta["flag"], getattr(self, field.name), meta["low"],
                                  at_most=meta["high"])

    @property
    def keeps_audio(self) -> bool:
        """Whether its chunks carry the audio track (part of every run key)."""
        return False

    def key(self, sample_ms: int) -> tuple[tuple[str, object], ...]:
        """What a video's results depend on besides the rest of the run key: a change redoes
        it."""
        raise NotImplementedError

    def prepare(self, info: VideoInfo, limits: Limits, folder: Path,
                sample_ms: int) -> PreparedChunks:
        """What this strategy sends for the probed video `info` (scratch files in `folder`)."""
        raise NotImplementedError

    def cost(self, info: VideoInfo, plan: Plan, limits: Limits, sample_ms: int) -> Cost:
        """What it would cost to send `info` (`plan` is its copy plan), for `plan`."""
        raise NotImplementedError

    @classmethod
    def settings(cls) -> tuple[dataclasses.Field[Any], ...]:
        """Its settings, each with its flag, help and range."""
        return tuple(f for f in dataclasses.fields(cls) if "flag" in f.metadata)
