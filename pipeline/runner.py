"""Run: inputs -> probe -> split -> predict (a shared pool) -> checkpoints -> merge -> outputs."""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import inputs, outputs, segment, store
from pipeline.backends import Backend
from pipeline.errors import (
    AuthError,
    BackendError,
    FFmpegError,
    InputError,
    OverLimitError,
    PipelineError,
)
from pipeline.merge import merge
from pipeline.probe import probe
from pipeline.settings import Settings
from pipeline.types import Chunk, ChunkResult, Frame, Limits, VideoInfo

log = logging.getLogger(__name__)

_VIDEOS_IN_FLIGHT = 2  # split the next video while this one's chunks are predicted
_MAX_RESPLITS = 3


@dataclass
class Outcome:
    """What happened to one input; one entry of summary.json."""

    source: str
    id: str | None = None
    status: str = "failed"  # done | skipped | failed
    error: str | None = None
    chunks: int = 0
    requests: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "status": self.status, "error": self.error,
                "chunks": self.chunks, "requests": self.requests,
                "seconds": round(self.seconds, 3)}


@dataclass
class _Job:
    outcome: Outcome
    info: VideoInfo
    vdir: store.VideoDir
    chunks: list[Chunk]
    started: float
    futures: dict[int, Future[ChunkResult]] = field(default_factory=dict)


def make_backend(settings: Settings) -> Backend:
    """The backend the settings name; never switched silently."""
    if settings.backend == "local":
        from pipeline.backends.local import LocalBackend
        return LocalBackend(settings.model, decode_threads=1 if settings.workers > 1 else 0)
    from pipeline.backends.clarifai import ClarifaiBackend
    return ClarifaiBackend.from_settings(settings)


class Runner:
    """Processes inputs into `out`; a rerun skips finished videos and finished chunks."""

    def __init__(self, settings: Settings, out: str, backend: Backend | None = None,
                 progress: Any = None) -> None:
        self.settings = settings
        self.out = Path(out)
        self.limits: Limits = settings.limits
        self.backend = backend or make_backend(settings)
        self.progress = progress
        self.outcomes: list[Outcome] = []

    # -- the whole run ---------------------------------------------------------------------
    def run(self, sources: list[str]) -> list[Outcome]:
        self.out.mkdir(parents=True, exist_ok=True)
        pending: list[_Job] = []
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="predict") as pool:
            try:
                for source in inputs.expand(sources):
                    job = self._prepare(source, pool)
                    if job is not None:
                        pending.append(job)
                    while len(pending) >= _VIDEOS_IN_FLIGHT:
                        self._finish(pending.pop(0))
                while pending:
                    self._finish(pending.pop(0))
            except BaseException:
                for job in pending:
                    for fut in job.futures.values():
                        fut.cancel()
                self._write_summary()
                raise
        return self.outcomes

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._write_summary()
        if outcome.status == "failed":
            log.error("%s", outcome.error)
        else:
            log.info("%s: %s (%d chunks, %d requests)", outcome.source, outcome.status,
                     outcome.chunks, outcome.requests)

    def _write_summary(self) -> None:
        counts = {s: sum(1 for o in self.outcomes if o.status == s)
                  for s in ("done", "skipped", "failed")}
        store.atomic_write_json(self.out / "summary.json", {
            "counts": counts, "inputs": [o.as_dict() for o in self.outcomes]})

    # -- one video: prepare (probe, split, submit) and finish (merge, write) -----------------
    def _prepare(self, source: inputs.Source, pool: ThreadPoolExecutor) -> _Job | None:
        started = time.monotonic()
        outcome = Outcome(source.path)
        if source.error:
            outcome.error = f"{source.path}: {source.error}"
            self._record(outcome)
            return None
        try:
            outcome.id = inputs.video_id(source.path) if Path(source.path).is_file() else None
            if outcome.id and self._finished(store.VideoDir(self.out, outcome.id)):
                outcome.status = "skipped"
                outcome.seconds = time.monotonic() - started
                self._record(outcome)
                return None
            info = probe(source.path, keep_audio=self.settings.keep_audio)
            assert outcome.id is not None
            vdir = store.VideoDir(self.out, outcome.id)
            chunks = self._chunks(info, vdir)
        except (InputError, FFmpegError, PipelineError) as exc:
            outcome.error = _message(source.path, exc)
            outcome.seconds = time.monotonic() - started
            self._record(outcome)
            return None
        job = _Job(outcome, info, vdir, chunks, started)
        todo = [c for c in chunks if self._checkpoint(vdir, c) is None]
        if self.progress is not None:
            self.progress.add(len(chunks), len(chunks) - len(todo))
        for chunk in todo:
            job.futures[chunk.index] = fut = pool.submit(self._predict, chunk, vdir)
            if self.progress is not None:
                fut.add_done_callback(lambda _f: self.progress.done(1))
        return job

    def _finish(self, job: _Job) -> None:
        outcome = job.outcome
        try:
            for fut in job.futures.values():
                fut.result()
            results = {c.index: self._checkpoint(job.vdir, c) for c in job.chunks}
            self._write_outputs(job, {i: r for i, r in results.items() if r is not None})
            outcome.status = "done"
            outcome.chunks = len(job.chunks)
            outcome.requests = sum(r.attempts for r in results.values() if r is not None)
        except AuthError:
            raise
        except (BackendError, InputError, FFmpegError, PipelineError) as exc:
            outcome.error = _message(job.info.path, exc)
        outcome.seconds = time.monotonic() - job.started
        self._record(outcome)

    def _finished(self, vdir: store.VideoDir) -> bool:
        if self.settings.force:
            return False
        timeline = store.read_json(vdir.timeline)
        return bool(timeline) and timeline.get("run_key") == self._run_key()

    def _run_key(self) -> dict[str, Any]:
        return {"backend": self.backend.name, "model": self.backend.model.id,
                "sample_ms": self.settings.sample_ms, "limits": self.limits.as_dict(),
                "keep_audio": self.settings.keep_audio}

    # -- chunks and checkpoints ----------------------------------------------------------------
    def _chunks(self, info: VideoInfo, vdir: store.VideoDir) -> list[Chunk]:
        saved = store.read_json(vdir.chunks_json)
        if (saved and not self.settings.force and saved.get("run_key") == self._run_key()
                and all(Path(c["file"]).exists() for c in saved["chunks"])):
            return [outputs.chunk_from_dict(c) for c in saved["chunks"]]
        chunks = segment.split(info, self.limits, str(vdir.chunk_media),
                               segment.SegmentOptions(keep_audio=self.settings.keep_audio))
        store.atomic_write_json(vdir.chunks_json, {
            "run_key": self._run_key(), "source": info.path,
            "chunks": [outputs.chunk_dict(c) for c in chunks]})
        if self.settings.force:
            shutil.rmtree(vdir.results, ignore_errors=True)
        return chunks

    def _result_key(self, chunk: Chunk) -> dict[str, Any]:
        return {"backend": self.backend.name, "model": self.backend.model.id,
                "sample_ms": self.settings.sample_ms, "start": str(chunk.start),
                "end": str(chunk.end), "frames": chunk.frames}

    def _checkpoint(self, vdir: store.VideoDir, chunk: Chunk) -> ChunkResult | None:
        raw = store.read_json(vdir.result(chunk.index))
        if not raw or raw.get("key") != self._result_key(chunk):
            return None
        return outputs.result_from_dict(raw)

    def _predict(self, chunk: Chunk, vdir: store.VideoDir) -> ChunkResult:
        result = self._predict_fitting(chunk, vdir, self.limits, depth=0)
        store.atomic_write_json(vdir.result(chunk.index),
                                outputs.result_dict(result, self._result_key(chunk)))
        return result

    def _predict_fitting(self, chunk: Chunk, vdir: store.VideoDir, limits: Limits,
                         depth: int) -> ChunkResult:
        """Predict a chunk; if the API answers that it is too large (or it keeps timing out),
        cut it in pieces of half the budget and predict those, re-offset into one result."""
        try:
            return self.backend.predict(chunk, self.settings.sample_ms)
        except OverLimitError as exc:
            if depth >= _MAX_RESPLITS:
                raise
            smaller = _halved(limits, chunk)
            tried = getattr(exc, "attempts", 1)
            log.warning("chunk %d (%d bytes) was refused as too large (%s); re-splitting it "
                        "under %d bytes", chunk.index, chunk.size_bytes, exc, smaller.max_bytes)
            pieces = segment.resplit(chunk, smaller, str(vdir.chunk_media),
                                     segment.SegmentOptions(keep_audio=self.settings.keep_audio))
        frames: list[Frame] = []
        attempts = tried
        for piece in pieces:
            part = self._predict_fitting(piece, vdir, smaller, depth + 1)
            offset = piece.start_ms - chunk.start_ms
            frames.extend(Frame(offset + f.time_ms, f.concepts) for f in part.frames)
            attempts += part.attempts
        return ChunkResult(chunk.index, tuple(frames), attempts)

    def _write_outputs(self, job: _Job, results: dict[int, ChunkResult]) -> None:
        frames = merge(job.chunks, results)
        attempts = {i: r.attempts for i, r in results.items()}
        timeline = outputs.timeline_dict(
            info=job.info, backend=self.backend.name, model=self.backend.model,
            sample_ms=self.settings.sample_ms, limits=self.limits, chunks=job.chunks,
            attempts=attempts, frames=frames)
        timeline["run_key"] = self._run_key()
        store.atomic_write_text(job.vdir.frames_csv, outputs.frames_csv(frames))
        store.atomic_write_json(job.vdir.timeline, timeline)
        shutil.rmtree(job.vdir.chunk_media, ignore_errors=True)


def _halved(limits: Limits, chunk: Chunk) -> Limits:
    return Limits(limits.mode, max(100_000, min(limits.max_bytes, chunk.size_bytes) // 2),
                  max(1000, min(limits.max_duration_ms, chunk.end_ms - chunk.start_ms) // 2))


def _message(path: str, exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith(path) else f"{path}: {text}"
