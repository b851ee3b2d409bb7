"""The compact strategy: a proxy video of the sampled frames, cut at exact multiples of sample_ms.

One ffmpeg pass per video (both cores) writes the proxy: frame n is the source's frame at
instant n, shown for one whole interval (pts n * sample_ms), so an API sampling a chunk of it
from the chunk's start sees exactly the source's instants. The proxy is deterministic (CRF, no
rate cap, pinned threads, bit-exact flags): a resumed run rebuilds the same bytes. Chunks are
cut from its sample table, greedily by their exact size at keyframes (one every tenth of a
chunk), and built in memory when sent; a keyframe interval alone over the byte limit is encoded
again smaller. Ten minutes of 720p at one sample a second is one request of ~9 MB (real camera
footage) to two (film, noisy footage: 14 MB).

Skipping similar frames (--skip-similar), every frame of the proxy is a keyframe, so that a
chunk can carry any instants of it, one interval each, built from its sample table with no
second encode; the same pass writes each frame's signature (`pipeline.skip`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.errors import InputError, SegmentError
from pipeline.media import mp4read, mp4write, sampler
from pipeline.send import costs, instants, skipping
from pipeline.send.encoded import SIDE, beside, made_once, sampled_table
from pipeline.send.media import ChunkMedia
from pipeline.send.strategy import Cost, PreparedChunks, Skipper, Strategy, Travel, setting
from pipeline.types import Chunk, Limits, LocalVideo, Plan, SampleTable, VideoBytes, VideoInfo

log = logging.getLogger(__name__)

_MAX_SHRINKS = 3  # a keyframe interval is encoded again at most this often, each time smaller
_CRF_STEP = 6  # ~half the bytes each time
_MAX_CRF = 51


@dataclass(frozen=True, kw_only=True)
class Compact(Strategy):
    """A small proxy video of the sampled frames, ten minutes a request."""

    name: ClassVar[str] = "compact"
    summary: ClassVar[str] = "a small video of the sampled frames, 10 min a request"
    travel: ClassVar[Travel] = Travel.STAGED
    exact_decode: ClassVar[bool] = True
    cpu_per_hour: ClassVar[float] = 266.0  # decoding every frame, encoding the sampled ones

    proxy_size: int = setting(320, "--proxy-size", "compact: the proxy's shorter side in "
                              "pixels, never upscaled (default 320)", low=64, high=4096,
                              metavar="PX")
    proxy_crf: int | None = setting(None, "--proxy-crf", "compact: x264 quality, 0-51, lower "
                                    "is better and larger (default 23 at one sample a second "
                                    "or fewer, lower for shorter --sample-ms: 21 at 500, 16 at "
                                    "100)", low=0, high=51, metavar="CRF")
    skip_similar: bool = skipping.similar()
    skip_threshold: float = skipping.threshold()
    max_carry_ms: int = skipping.max_carry()
    audit_share: float = skipping.audit_share()

    def crf(self, sample_ms: int) -> int:
        return self.proxy_crf if self.proxy_crf is not None else sampler.proxy_crf(sample_ms)

    def key(self, sample_ms: int) -> tuple[tuple[str, object], ...]:
        return (("name", self.name), ("proxy_size", self.proxy_size), ("crf", self.crf(sample_ms)),
                *skipping.key(self))

    def prepare(self, info: VideoInfo, limits: Limits, folder: Path,
                sample_ms: int) -> PreparedChunks:
        return CompactChunks(self, sample_ms, info, limits, folder)

    def cost(self, info: VideoInfo, plan: Plan, limits: Limits, sample_ms: int) -> Cost:
        count = instants.grid(info, sample_ms).count
        per_frame = costs.proxy_bytes_per_frame(info, self.proxy_size, self.crf(sample_ms),
                                                sample_ms)
        fixed, each = costs.MP4_OVERHEAD
        total = count * (per_frame + each)
        per_chunk = max(1, limits.max_duration_ms // sample_ms)
        requests = costs.requests_for(count, per_chunk, total, limits.max_bytes)
        return Cost(self.name, requests, total + requests * fixed, count,
                    costs.cpu_seconds(info, self.cpu_per_hour, decodes=True), True)


class CompactChunks:
    """The proxy of one video, its chunks and their bytes."""

    def __init__(self, strategy: Compact, sample_ms: int, info: VideoInfo, limits: Limits,
                 folder: Path) -> None:
        self.strategy = strategy
        self.sample_ms = sample_ms
        self.crf = strategy.crf(sample_ms)
        self.limits = limits
        self.grid = instants.grid(info, sample_ms)
        self.length = instants.span(info)
        self.per_chunk = limits.max_duration_ms // sample_ms
        if self.per_chunk < 1:
            raise InputError(info.path, f"--max-seconds is shorter than one sample "
                             f"({sample_ms} ms): a compact chunk holds one at least")
        self.keyint = max(1, self.per_chunk // 10)
        self._folder = folder
        self._name = info.path
        self._tables: dict[str, SampleTable] = {}
        self._lock = threading.Lock()
        rules = skipping.rules(strategy, sample_ms)
        path = self._encode(info, signatures=rules is not None)
        self.source = str(path)
        self.skipper: Skipper | None = None if rules is None else skipping.Skipping(
            rules, beside(path, skipping.SIGNATURES), self.grid.count, self._carrying)

    # -- the proxy ---------------------------------------------------------------------------
    def _encode(self, info: VideoInfo, *, signatures: bool) -> Path:
        """The proxy file (and, when skipping, the signatures; every frame a keyframe), made
        once: an earlier run's is taken as it is (renamed into place only when whole, and named
        by its command line)."""
        argv = sampler.proxy_argv(info.path, "OUT", self.grid, side=self.strategy.proxy_size,
                                  crf=self.crf, keyint=self.keyint, per_chunk=self.per_chunk,
                                  signatures=SIDE if signatures else None)
        path = made_once(argv, self._folder, "proxy.mp4", video=info.path,
                         what="the compact proxy", seconds=info.duration_ms / 1000,
                         doing=f"encoding the compact proxy ({self.grid.count} frames, "
                               f"{self.strategy.proxy_size} px, CRF {self.crf})",
                         side=skipping.SIGNATURES if signatures else None)
        table = sampled_table(path, self.grid.count, video=info.path, what="the compact proxy")
        if signatures and not table.keys.all():
            raise SegmentError(f"{path}: the proxy of a video that skips must be all keyframes")
        self._tables[str(path)] = table
        return path

    def _table(self, path: str) -> SampleTable:
        with self._lock:
            if path not in self._tables:
                found = mp4read.video_tables(path)
                if not found:
                    raise SegmentError(f"{path}: not a readable MP4")
                self._tables[path] = next(iter(found.values()))
            return self._tables[path]

    # -- chunks ------------------------------------------------------------------------------
    def chunks(self) -> list[Chunk]:
        pieces = self._cut(self.source, 0, self.grid.count, 0, self.limits, depth=0)
        return [dataclasses.replace(c, index=i) for i, c in enumerate(pieces)]

    def recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        if chunk.instants is not None:
            return self._recut_chosen(chunk, limits)
        assert chunk.packets is not None
        first, end = chunk.packets
        offset = self._instant(chunk.start) - first
        pieces = self._cut(chunk.path, first, end, offset, limits, depth=int(chunk.reencoded))
        if len(pieces) < 2:
            raise SegmentError(f"chunk {chunk.index} cannot be cut smaller")
        return [dataclasses.replace(c, index=i) for i, c in enumerate(pieces)]

    def _cut(self, path: str, first: int, end: int, offset: int, limits: Limits, *,
             depth: int) -> list[Chunk]:
        """Samples [first, end) of `path` (instant = sample + offset) as verified chunks."""
        table = self._table(path)
        per_chunk = limits.max_duration_ms // self.sample_ms
        out: list[Chunk] = []
        for a, b, fits in greedy(table, first, end, per_chunk, limits.max_bytes):
            if fits:
                out.append(self._chunk(path, table, a, b, offset, limits, reencoded=depth > 0))
            else:
                out.extend(self._shrink(path, a, b, offset, limits, depth + 1))
        return out

    def _chunk(self, path: str, table: SampleTable, a: int, b: int, offset: int,
               limits: Limits, *, reencoded: bool) -> Chunk:
        """One chunk, verified: starts on a keyframe, every frame one interval long, within
        both limits."""
        size = mp4write.layout(table, a, b).size
        ticks = self.sample_ms * table.timescale // 1000
        durations = table.durations[a:b]
        if not table.keys[a] or (durations != ticks).any():
            raise SegmentError(f"{path}: samples {a}-{b} do not start on a keyframe or are "
                               f"not {self.sample_ms} ms apart")
        if size > limits.max_bytes or (b - a) * self.sample_ms > limits.max_duration_ms:
            raise SegmentError(f"{path}: samples {a}-{b} come to {size} bytes, over the limits")
        start, stop = instants.bounds(a + offset, b + offset, self.sample_ms,
                                      self.length)
        return Chunk(0, path, start, stop, size, b - a, reencoded, packets=(a, b))

    def _shrink(self, path: str, a: int, b: int, offset: int, limits: Limits,
                depth: int) -> list[Chunk]:
        """Samples [a, b) encoded again smaller (a keyframe interval alone is over the byte
        limit), then cut like the rest."""
        crf = min(_MAX_CRF, self.crf + _CRF_STEP * depth)
        if depth > _MAX_SHRINKS:
            raise SegmentError(f"frames at {(a + offset) * self.sample_ms / 1000:.0f} s "
                               f"stay over {limits.max_bytes} bytes even encoded at CRF {crf}")
        log.warning("compact: frames %d-%d are %d bytes a keyframe interval, over the limit; "
                    "encoding them again at CRF %d", a + offset, b + offset,
                    mp4write.layout(self._table(path), a, b).size, crf)
        argv = sampler.shrink_argv(path, "OUT", a, b, crf=crf, keyint=max(1, (b - a) // 4))
        target = made_once(argv, Path(path).parent, f"{Path(path).stem}-{a}-{b}.mp4",
                           video=self._name, what="a smaller compact chunk",
                           seconds=(b - a) * self.sample_ms / 1000)
        if len(self._table(str(target)).sizes) != b - a:
            raise SegmentError(f"{target}: re-encoding lost frames")
        return self._cut(str(target), 0, b - a, a + offset, limits, depth=depth)

    def _instant(self, start: Fraction) -> int:
        return int(start * 1000 / self.sample_ms)

    # -- chunks of chosen instants (--skip-similar) ------------------------------------------
    def _carrying(self, chosen: Sequence[int], first_index: int,
                  limits: Limits | None = None) -> list[Chunk]:
        """Chunks of the instants `chosen`, in order: each the proxy's frames of its instants,
        one interval each (every frame is a keyframe), as many as fit in --max-seconds and
        --max-bytes (its exact size as written)."""
        limits = limits or self.limits
        per_chunk = max(1, limits.max_duration_ms // self.sample_ms)
        out: list[Chunk] = []
        a = 0
        while a < len(chosen):
            b = self._fitting(chosen, a, min(len(chosen), a + per_chunk), limits.max_bytes)
            part = tuple(chosen[a:b])
            start, stop = instants.bounds(part[0], part[-1] + 1, self.sample_ms, self.length)
            out.append(Chunk(first_index + len(out), self.source, start, stop,
                             self._picked_size(part), len(part), instants=part))
            a = b
        return out

    def _fitting(self, chosen: Sequence[int], a: int, most: int, max_bytes: int) -> int:
        """The largest b <= most whose chunk chosen[a:b] fits in max_bytes (sizes grow with
        b: a binary search); a frame alone over it cannot be sent."""
        if self._picked_size(chosen[a:a + 1]) > max_bytes:
            raise SegmentError(f"the proxy's frame at {chosen[a] * self.sample_ms / 1000:.0f} s "
                               f"is over {max_bytes} bytes alone; raise --max-bytes or lower "
                               "--proxy-size")
        low, high = a + 1, most
        while low < high:
            mid = (low + high + 1) // 2
            if self._picked_size(chosen[a:mid]) <= max_bytes:
                low = mid
            else:
                high = mid - 1
        return low

    def _recut_chosen(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        assert chunk.instants is not None
        if len(chunk.instants) < 2:
            raise SegmentError(f"chunk {chunk.index} cannot be cut smaller")
        pieces = self._carrying(chunk.instants, 0, limits)
        if len(pieces) < 2:
            half = len(chunk.instants) // 2
            pieces = [*self._carrying(chunk.instants[:half], 0, limits),
                      *self._carrying(chunk.instants[half:], 1, limits)]
        return [dataclasses.replace(c, index=i) for i, c in enumerate(pieces)]

    def _picked(self, chosen: Sequence[int]) -> SampleTable:
        """The proxy's samples of `chosen`, retimed one interval apart from 0."""
        table = self._table(self.source)
        which = np.asarray(chosen, dtype=np.int64)
        ticks = self.sample_ms * table.timescale // 1000
        times = np.arange(len(which), dtype=np.int64) * ticks
        return SampleTable(table.timescale, times, times, np.full(len(which), ticks, np.int64),
                           table.sizes[which], np.ones(len(which), bool), table.offsets[which],
                           table.stsd, table.tkhd, table.language)

    def _chosen_bytes(self, path: str, chosen: Sequence[int]) -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return mp4write.chunk_bytes(fd, self._picked(chosen), 0, len(chosen))
        finally:
            os.close(fd)

    def _picked_size(self, chosen: Sequence[int]) -> int:
        return mp4write.layout(self._picked(chosen), 0, len(chosen)).size

    # -- requests ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def open(self, chunk: Chunk) -> Iterator[LocalVideo]:
        """The chunk's bytes: an MP4 of its samples, built from the proxy's sample table."""
        if chunk.instants is not None:
            yield VideoBytes(self._chosen_bytes(chunk.path, chunk.instants))
            return
        with ChunkMedia(self._table(chunk.path)).open(chunk) as media:
            yield media


def greedy(table: SampleTable, first: int, end: int, per_chunk: int,
           max_bytes: int) -> Iterator[tuple[int, int, bool]]:
    """Cuts of samples [first, end) at keyframes, each chunk as many keyframe intervals as fit
    in `per_chunk` samples and `max_bytes` (its exact size as written): (a, b, True); a keyframe
    interval that does not fit alone: (a, b, False)."""
    keys = np.flatnonzero(table.keys[first:end]) + first
    stops = [int(k) for k in keys if k > first] + [end]
    a = first
    while a < end:
        best = None
        for b in (b for b in stops if a < b <= a + per_chunk):
            if mp4write.layout(table, a, b).size > max_bytes:
                break  # sizes only grow with b
            best = b
        if best is None:
            best = next(b for b in stops if b > a)
            yield a, best, False
        else:
            yield a, best, True
        a = best
