"""Run: inputs -> probe -> split -> predict (a shared pool) -> checkpoints -> merge -> outputs.

Crash safety: every file is written atomically, each chunk's result is checkpointed as soon as it
arrives, and timeline.json (written last) marks a video done. A rerun skips a done video after
reading only its id (no probe, no request), resumes a half-done one from its checkpoints, and
redoes a changed source (a new id). Each video is worked on under a lock (`locks.VideoLock`), so
overlapping runs on one --out never share a video. A stop request (`stop.is_set()`, set by
SIGTERM/SIGINT) lets chunks in flight finish, sends nothing new and raises Interrupted."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
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
    Interrupted,
    LockedError,
    OverLimitError,
    PipelineError,
)
from pipeline.locks import VideoLock
from pipeline.merge import merge
from pipeline.probe import probe
from pipeline.settings import Settings
from pipeline.stopping import StopCheck
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
    note: str | None = None  # why a video was skipped: already done, or another run has it
    chunks: int = 0  # chunks the video was cut into
    resumed: int = 0  # of those, chunks whose result a previous run had already saved
    requests: int = 0  # prediction requests sent by this run (retries and re-splits included)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "status": self.status, "error": self.error,
                "note": self.note, "chunks": self.chunks, "resumed": self.resumed,
                "requests": self.requests, "seconds": round(self.seconds, 3)}


def write_summary(out: Path, outcomes: list[Outcome]) -> None:
    """DIR/summary.json: counts by status and one entry per input, in input order."""
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("done", "skipped", "failed")}
    store.atomic_write_json(out / "summary.json", {
        "counts": counts, "requests": sum(o.requests for o in outcomes),
        "inputs": [o.as_dict() for o in outcomes]})


@dataclass
class _Job:
    outcome: Outcome
    info: VideoInfo
    vdir: store.VideoDir
    chunks: list[Chunk]
    started: float
    lock: VideoLock
    display: str
    download: str | None = None
    futures: dict[int, Future[ChunkResult]] = field(default_factory=dict)

    def release(self) -> None:
        self.lock.release()
        if self.download:
            inputs.remove_quietly(self.download)


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
                 progress: Any = None, stop: StopCheck | None = None,
                 summary: bool = True) -> None:
        self.settings = settings
        self.out = Path(out)
        self.limits: Limits = settings.limits
        self.backend = backend or make_backend(settings)
        self.progress = progress
        self.stop: StopCheck = stop or threading.Event()
        self.summary = summary  # False on Dask workers: the client writes summary.json
        self.outcomes: list[Outcome] = []

    # -- the whole run ---------------------------------------------------------------------
    def run(self, sources: list[str]) -> list[Outcome]:
        """Process every input; raise Interrupted (after saving state) if asked to stop."""
        self.out.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="predict") as pool:
            self._run_all(inputs.expand(sources), pool)
        if self.stop.is_set():
            raise Interrupted("stopped before every input was done")
        return self.outcomes

    def process(self, source: inputs.Source) -> Outcome:
        """One input, start to end, in its own pool (a Dask task); summary.json is not written."""
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="predict") as pool:
            job = self._prepare(source, pool)
            if job is not None:
                self._finish(job)
        return self.outcomes[-1]

    def skipped_if_done(self, source: inputs.Source) -> Outcome | None:
        """A "skipped" outcome if this local file's video is already done (read: its id and
        timeline.json; no probe, no lock, no request), else None."""
        if source.error or source.is_url or not Path(source.path).is_file():
            return None
        started = time.monotonic()
        outcome = Outcome(source.display, id=inputs.video_id(source.path))
        if not self._finished(store.VideoDir(self.out, outcome.id or "")):
            return None
        outcome.status, outcome.note = "skipped", "already done"
        outcome.seconds = time.monotonic() - started
        return outcome

    def _run_all(self, sources: list[inputs.Source], pool: ThreadPoolExecutor) -> None:
        pending: list[_Job] = []
        try:
            for source in sources:
                if self.stop.is_set():
                    break
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
                job.release()
            self._write_summary()
            raise

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._write_summary()
        if outcome.status == "failed":
            log.error("%s", outcome.error)
        else:
            log.info("%s: %s%s (%d chunks, %d requests)", outcome.source, outcome.status,
                     f": {outcome.note}" if outcome.note else "", outcome.chunks,
                     outcome.requests)

    def _write_summary(self) -> None:
        if self.summary:
            write_summary(self.out, self.outcomes)

    # -- one video: prepare (probe, split, submit) and finish (merge, write) -----------------
    def _prepare(self, source: inputs.Source, pool: ThreadPoolExecutor) -> _Job | None:
        started = time.monotonic()
        outcome = Outcome(source.display)
        if source.error:
            outcome.error = f"{source.display}: {source.error}"
            self._record(outcome)
            return None
        local, download, lock = source.path, None, None
        try:
            if source.is_url:
                download = tempfile.mkdtemp(prefix="video-pipeline-dl-")
                local = inputs.download(source.path, download)
            outcome.id = _video_id(source, local)
            vdir = store.VideoDir(self.out, outcome.id)
            lock = self._lock_unless_done(vdir, outcome, started)
            if lock is None:
                inputs.remove_quietly(download)
                return None
            info = probe(local, keep_audio=self.settings.keep_audio)
            chunks = self._chunks(info, vdir)
        except BaseException as exc:
            if lock is not None:
                lock.release()
            inputs.remove_quietly(download)
            if not isinstance(exc, PipelineError):
                raise
            self._record_failure(outcome, source.display, exc, started)
            return None
        job = _Job(outcome, info, vdir, chunks, started, lock, source.display, download)
        self._submit(job, pool)
        return job

    def _lock_unless_done(self, vdir: store.VideoDir, outcome: Outcome,
                          started: float) -> VideoLock | None:
        """The video's lock, or None (recorded as skipped) if it is done or another run has it.
        Done is checked again under the lock: the other run may have just finished it."""
        if self._finished(vdir):
            self._record_skip(outcome, "already done", started)
            return None
        lock = VideoLock(self.out, vdir.root.name)
        try:
            lock.acquire(wait=self.settings.lock_wait)
        except LockedError as exc:
            if self._finished(vdir):
                self._record_skip(outcome, "already done", started)
            else:
                self._record_skip(outcome, f"{exc}; skipped it", started)
                log.warning("%s: %s; skipped it", outcome.source, exc)
            return None
        if self._finished(vdir):
            lock.release()
            self._record_skip(outcome, "already done (by another run)", started)
            return None
        return lock

    def _record_skip(self, outcome: Outcome, note: str, started: float) -> None:
        outcome.status, outcome.note = "skipped", note
        outcome.seconds = time.monotonic() - started
        self._record(outcome)

    def _record_failure(self, outcome: Outcome, shown: str, exc: Exception,
                        started: float) -> None:
        outcome.status = "failed"
        outcome.error = _message(shown, exc)
        if self.stop.is_set() and not isinstance(exc, AuthError):
            # A signal also reaches our ffmpeg children; their failure is the interruption.
            saved = (f" ({outcome.resumed} of {outcome.chunks} chunks saved)"
                     if outcome.chunks else "")
            outcome.error = f"{shown}: interrupted{saved}; rerun to resume"
        outcome.seconds = time.monotonic() - started
        self._record(outcome)

    def _submit(self, job: _Job, pool: ThreadPoolExecutor) -> None:
        todo = [c for c in job.chunks if self._checkpoint(job.vdir, c) is None]
        job.outcome.chunks = len(job.chunks)
        job.outcome.resumed = len(job.chunks) - len(todo)
        if self.progress is not None:
            self.progress.add(len(job.chunks), job.outcome.resumed)
        for chunk in todo:
            job.futures[chunk.index] = fut = pool.submit(self._predict, chunk, job.vdir)
            if self.progress is not None:
                fut.add_done_callback(self._count_progress)

    def _count_progress(self, fut: Future[ChunkResult]) -> None:
        ok = not fut.cancelled() and fut.exception() is None
        self.progress.done(1, frames=len(fut.result().frames) if ok else 0)

    def _finish(self, job: _Job) -> None:
        outcome = job.outcome
        try:
            sent = self._wait(job)
            outcome.requests = sum(r.attempts for r in sent)
            results = {c.index: self._checkpoint(job.vdir, c) for c in job.chunks}
            self._write_outputs(job, {i: r for i, r in results.items() if r is not None})
            outcome.status = "done"
            outcome.seconds = time.monotonic() - job.started
            self._record(outcome)
        except (BackendError, InputError, FFmpegError, PipelineError) as exc:
            if isinstance(exc, AuthError):
                raise
            saved = sum(1 for c in job.chunks if self._checkpoint(job.vdir, c) is not None)
            outcome.resumed = saved  # what a rerun will find saved
            self._record_failure(outcome, job.display, exc, job.started)
        finally:
            job.release()

    def _wait(self, job: _Job) -> list[ChunkResult]:
        """Every chunk's result; after a failure, the rest still finish (and are saved)."""
        sent: list[ChunkResult] = []
        first: BaseException | None = None
        for fut in job.futures.values():
            try:
                sent.append(fut.result())
            except PipelineError as exc:
                first = first or exc
                for other in job.futures.values():
                    other.cancel()
        if first is not None:
            job.outcome.requests = sum(r.attempts for r in sent)
            raise first
        return sent

    def _finished(self, vdir: store.VideoDir) -> bool:
        if self.settings.force:
            return False
        timeline = store.read_json(vdir.timeline)
        return isinstance(timeline, dict) and timeline.get("run_key") == self._run_key()

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
        if self.stop.is_set():
            raise Interrupted(f"stopped before chunk {chunk.index} was sent")
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
            info=dataclasses.replace(job.info, path=job.display), backend=self.backend.name,
            model=self.backend.model,
            sample_ms=self.settings.sample_ms, limits=self.limits, chunks=job.chunks,
            attempts=attempts, frames=frames)
        timeline["run_key"] = self._run_key()
        store.atomic_write_text(job.vdir.frames_csv, outputs.frames_csv(frames))
        store.atomic_write_json(job.vdir.timeline, timeline)
        shutil.rmtree(job.vdir.chunk_media, ignore_errors=True)


def _video_id(source: inputs.Source, local: str) -> str:
    if source.is_url:
        return inputs.video_id(local, name=source.display.rsplit("/", 1)[-1])
    if not Path(local).is_file():
        probe(local, scan=False)  # raises the InputError that says what is wrong with it
    return inputs.video_id(local)


def _halved(limits: Limits, chunk: Chunk) -> Limits:
    return Limits(limits.mode, max(100_000, min(limits.max_bytes, chunk.size_bytes) // 2),
                  max(1000, min(limits.max_duration_ms, chunk.end_ms - chunk.start_ms) // 2))


def _message(path: str, exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith(path) else f"{path}: {text}"
