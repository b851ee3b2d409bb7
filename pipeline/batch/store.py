"""The checkpoint store: one video's folder, DIR/VIDEO_ID, its layout, keys and file formats.

timeline.json (written after the exports, atomically) holds a video's frames for one run key
(backend, model, sampling, limits); chunks.json lists its chunks; results/ holds each chunk's
answer, saved the moment it arrives, under a key that names the chunk exactly, with the sha256
of its content. outputs.json, written last, marks the video done: it records timeline.json's
size and sha256 and says which outputs (segment rules, exports, report) were made for that run
key: a rerun with other output settings rewrites them from the saved results, sending nothing.

Nothing is trusted that does not check out: a timeline.json that is not the file recorded is
made again (from the saved results, or by predicting the chunks whose results are gone or
damaged), and a saved result whose checksum fails, or that does not parse, is predicted again.
A rerun over a done video reads outputs.json and hashes timeline.json, no saved result. Nothing
outside this module reads or writes these files' dicts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import merge, skip
from pipeline.backends.models import model_info
from pipeline.output import formats, timeline
from pipeline.output.exports import Outputs, write_outputs
from pipeline.output.files import atomic_write_json, atomic_write_lines, read_json
from pipeline.settings import Settings
from pipeline.types import Chunk, ChunkResult, Frame, Limits, ModelInfo, VideoInfo

# Bumped when a checkpoint's meaning changes (2: frames saved on the source clock; 3: each
# result carries the sha256 of its content, so results saved before are predicted again).
_CHECKPOINT_FORMAT = 3


@dataclass(frozen=True)
class RunKey:
    """What a result depends on besides the source: a change redoes the video."""

    backend: str
    model: ModelInfo
    sample_ms: int
    limits: Limits
    keep_audio: bool
    # The strategy and its settings (send.strategy.Strategy.key); empty for copy, whose keys
    # are as they were before strategies existed (those runs stay done).
    strategy: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> RunKey:
        """The key of a run with `settings`: known from them alone (no backend is made, no
        model loaded, no key needed), so a Dask client can tell which videos are done."""
        return cls(settings.api.backend, model_info(settings.api.backend, settings.api.model),
                   settings.sample_ms, settings.limits, settings.strategy.keeps_audio,
                   settings.strategy.key(settings.sample_ms))

    def as_dict(self) -> dict[str, Any]:
        key = {"backend": self.backend, "model": self.model.id, "sample_ms": self.sample_ms,
               "limits": self.limits.as_dict(), "keep_audio": self.keep_audio}
        return key | ({"strategy": dict(self.strategy)} if self.strategy else {})

    def for_chunk(self, chunk: Chunk) -> dict[str, Any]:
        key = {"format": _CHECKPOINT_FORMAT, "backend": self.backend, "model": self.model.id,
               "sample_ms": self.sample_ms, "start": str(chunk.start), "end": str(chunk.end),
               "frames": chunk.frames}
        if chunk.instants is not None:  # which instants, exactly (--skip-similar)
            key["instants"] = hashlib.sha256(
                ",".join(map(str, chunk.instants)).encode()).hexdigest()[:16]
        return key | ({"strategy": dict(self.strategy)} if self.strategy else {})


class VideoStore:  # pragma: no mutate block (its file I/O; see tests/MUTATION.md)
    """DIR/VIDEO_ID for one run key."""

    def __init__(self, out: str | Path, video_id: str, key: RunKey,
                 outputs: Outputs | None = None) -> None:
        self.root = Path(out) / video_id
        self.key = key
        self.outputs = outputs or Outputs()
        self.timeline = self.root / "timeline.json"
        self.chunk_list = self.root / "chunks.json"
        self.chunk_media = self.root / "chunks"
        self.results_dir = self.root / "results"
        self.outputs_made = self.root / "outputs.json"
        self.report = self.root / "report.html"

    def done(self) -> bool:
        """Finished under this run key, as far as a rerun may trust: timeline.json is the very
        file outputs.json recorded (its size, then its sha256), or, with no record (a run that
        stopped before writing outputs.json, or an earlier version's), it reads through to this
        run key. No saved result is read."""
        made = self._made()
        record = made.get("timeline") if made is not None else None
        return self._timeline_matches(record) if record is not None else self._timeline_reads()

    def outputs_current(self) -> bool:
        """The outputs were made with these settings for this run key, and are all there."""
        return self._current(self._made())

    def _made(self) -> dict[str, Any] | None:
        """outputs.json, if it was written for this run key."""
        made = read_json(self.outputs_made)
        if not isinstance(made, dict) or made.get("run_key") != self.key.as_dict():
            return None
        return made

    def _current(self, made: Mapping[str, Any] | None) -> bool:
        if made is None or "timeline" not in made:  # an earlier version's: record it
            return False
        if made.get("outputs") != self.outputs.as_dict(self.key.sample_ms):
            return False
        wanted = [*self.outputs.files(), *(["report.html"] if self.outputs.report else [])]
        return all((self.root / name).exists() for name in wanted)

    def _timeline_matches(self, record: object) -> bool:
        """timeline.json is the file `record` names: its size first (a stat), then its hash."""
        if not isinstance(record, dict):
            return False
        try:
            if self.timeline.stat().st_size != record.get("size_bytes"):
                return False
            return self._timeline_record() == record
        except OSError:
            return False

    def _timeline_reads(self) -> bool:
        """timeline.json parses through (read as a stream: it can be large) and ends with this
        run key."""
        try:
            return timeline.read_key(self.timeline, "run_key") == self.key.as_dict()
        except (OSError, ValueError):
            return False

    def _timeline_record(self) -> dict[str, Any]:
        with open(self.timeline, "rb") as fh:
            sha = hashlib.file_digest(fh, "sha256")
        return {"size_bytes": self.timeline.stat().st_size, "sha256": sha.hexdigest()}

    def load_chunks(self, source: str) -> list[Chunk] | None:
        """The chunk list a previous run saved under this key, if every chunk file is there;
        chunks built from the samples of the file the list was saved for are of `source` (the
        same content, by the id, wherever it lies now; or a strategy's proxy)."""
        saved = self._saved_list()
        if saved is None:
            return None
        was, chunks = saved
        chunks = [dataclasses.replace(c, path=source)
                  if (c.packets or c.instants is not None) and c.path == was else c
                  for c in chunks]
        return chunks if all(Path(c.path).exists() for c in chunks) else None

    def _saved_chunks(self) -> list[Chunk] | None:
        """The saved chunk list for this key, its files there or not."""
        saved = self._saved_list()
        return saved[1] if saved is not None else None

    def _saved_list(self) -> tuple[str, list[Chunk]] | None:
        """The file the saved chunks were cut from, and the chunks, if saved for this key."""
        saved = read_json(self.chunk_list)
        if not isinstance(saved, dict) or saved.get("run_key") != self.key.as_dict():
            return None
        try:
            return str(saved["source"]), [formats.chunk_from_dict(c) for c in saved["chunks"]]
        except (KeyError, TypeError, ValueError):
            return None

    def load_selection(self) -> skip.Selection | None:
        """The instants sent and carried that the saved chunk list was made for (a video that
        skips similar frames), if saved for this key."""
        saved = read_json(self.chunk_list)
        if not isinstance(saved, dict) or saved.get("run_key") != self.key.as_dict() or \
                not isinstance(saved.get("selection"), dict):
            return None
        try:
            return skip.Selection.from_dict(saved["selection"])
        except (KeyError, TypeError, ValueError):
            return None

    def save_chunks(self, source: str, chunks: Sequence[Chunk],
                    selection: skip.Selection | None = None) -> None:
        """The chunk list (and, for a video that skips, its selection: which instants are
        sent and which carried, decided once and kept, so a resumed run sends the same)."""
        atomic_write_json(self.chunk_list, {
            "run_key": self.key.as_dict(), "source": source,
            "chunks": [formats.chunk_dict(c) for c in chunks],
            **({"selection": selection.as_dict()} if selection is not None else {})})

    def clear_results(self) -> None:
        shutil.rmtree(self.results_dir, ignore_errors=True)

    def _result_path(self, chunk: Chunk) -> Path:
        return self.results_dir / f"chunk-{chunk.index:05d}.json"

    def result(self, chunk: Chunk) -> ChunkResult | None:
        """The chunk's saved answer, if one was saved for exactly this chunk and key and its
        checksum holds."""
        return self._saved(chunk)[1]

    def _saved(self, chunk: Chunk) -> tuple[bool, ChunkResult | None]:
        """(ours, answer): whether the chunk's result file is there, saved for this chunk and
        key (or not parsing: it can be nothing else), and its answer if it is sound. A file
        saved under another key (an earlier version's, other settings') is not ours."""
        path = self._result_path(chunk)
        raw = read_json(path)
        if not isinstance(raw, dict):
            return (raw is not None or path.exists()), None
        if raw.get("key") != self.key.for_chunk(chunk):
            return False, None
        digest = _digest({k: v for k, v in raw.items() if k != "sha256"})
        if digest is None or raw.get("sha256") != digest:
            return True, None  # changed after it was saved: predict the chunk again
        try:
            frames = tuple(formats.frame_from_dict(f) for f in raw["frames"])
            return True, ChunkResult(int(raw["index"]), frames, int(raw.get("attempts", 1)),
                                     clock="source")
        except (KeyError, TypeError, ValueError):
            return True, None

    def save_result(self, chunk: Chunk, result: ChunkResult) -> None:
        """Save a result that is on the source clock, the moment it arrives, with the sha256
        of its content."""
        assert result.clock == "source", "checkpoints hold source-clock frames"
        payload = {"key": self.key.for_chunk(chunk), "index": result.index,
                   "attempts": result.attempts,
                   "frames": [formats.frame_dict(i, f) for i, f in enumerate(result.frames)]}
        atomic_write_json(self._result_path(chunk), payload | {"sha256": _digest(payload)})

    def results(self, chunks: Sequence[Chunk]) -> dict[int, ChunkResult]:
        """Every saved answer among `chunks`, by chunk index."""
        found = {c.index: self.result(c) for c in chunks}
        return {i: r for i, r in found.items() if r is not None}

    def write_timeline(self, *, info: VideoInfo, chunks: Sequence[Chunk],
                       attempts: Mapping[int, int], frames: Sequence[Frame],
                       skipping: Mapping[str, Any] | None = None) -> None:
        """The exports, then timeline.json (which marks the video done), then the report if
        asked and outputs.json; the chunk files go. Frames are streamed to each file."""
        self.outputs_made.unlink(missing_ok=True)  # says nothing about what follows
        key = self.key
        head = formats.timeline_head(
            info=info, backend=key.backend, model=key.model, sample_ms=key.sample_ms,
            limits=key.limits, chunks=chunks, attempts=attempts, skipping=skipping)
        write_outputs(self.root, frames, sample_ms=key.sample_ms,
                      duration_ms=info.duration_ms, outputs=self.outputs, source=info.path,
                      frame_rate=head["source"]["frame_rate"])
        tally = _Tally()
        atomic_write_lines(self.timeline, tally.through(
            timeline.pieces(head, frames, {"run_key": key.as_dict()})))
        shutil.rmtree(self.chunk_media, ignore_errors=True)
        self._finish_outputs(tally.record())

    def rewrite_outputs(self) -> bool:
        """A done video's outputs made again for the current output settings, from its saved
        results (timeline.json if they are gone): no chunk is sent, timeline.json is kept.
        False, with nothing made, if a saved result is damaged: its chunk is to be predicted
        again, and every output made with it."""
        frames = self._saved_frames()
        if frames is None:
            return False
        self.outputs_made.unlink(missing_ok=True)
        source = timeline.read_head(self.timeline)["source"]
        write_outputs(self.root, frames, sample_ms=self.key.sample_ms,
                      duration_ms=int(source["duration_ms"]), outputs=self.outputs,
                      source=str(source["path"]), frame_rate=source.get("frame_rate"))
        self._finish_outputs(self._timeline_record())
        return True

    def _saved_frames(self) -> list[Frame] | None:
        """The frames of the saved results, if every chunk has a sound one; timeline.json's
        if some are gone (or were saved under another key); None if one of ours is damaged."""
        chunks = self._saved_chunks() or []
        found = [self._saved(c) for c in chunks]
        if any(ours and answer is None for ours, answer in found):
            return None
        results = {c.index: answer for c, (_, answer) in zip(chunks, found, strict=True)
                   if answer is not None}
        if chunks and len(results) == len(chunks):
            return merge.timeline(chunks, results, self.load_selection(), self.key.sample_ms)
        return list(timeline.read_frames(self.timeline))

    def _finish_outputs(self, record: Mapping[str, Any]) -> None:
        """The report if asked, then outputs.json, which marks the video done and records
        timeline.json (`record`: its size and sha256)."""
        if self.outputs.report:
            # Only a run with --report needs the report's modules (Pillow, matplotlib)
            from pipeline.output.report import write_video_report
            write_video_report(self.root, self.outputs.rules, html=self.report)
        atomic_write_json(self.outputs_made, {
            "run_key": self.key.as_dict(),
            "outputs": self.outputs.as_dict(self.key.sample_ms), "timeline": dict(record)})


def _digest(payload: Mapping[str, Any]) -> str | None:
    """The sha256 of a saved result's content in one spelling (sorted keys, no blanks); None
    for content no result can hold (NaN or an infinity)."""
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Tally:
    """The size and sha256 of text as it is written (UTF-8), piece by piece."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._size = 0

    def through(self, pieces: Iterable[str]) -> Iterator[str]:
        for piece in pieces:
            data = piece.encode("utf-8")
            self._sha.update(data)
            self._size += len(data)
            yield piece

    def record(self) -> dict[str, Any]:
        return {"size_bytes": self._size, "sha256": self._sha.hexdigest()}
