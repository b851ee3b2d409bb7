"""Run: inputs -> one VideoJob each -> summary.json, with every chunk on one shared pool.

Crash safety: every file is written atomically, each chunk's result is checkpointed as soon as it
arrives, and timeline.json (written last) marks a video done. A rerun skips a done video after
reading only its id (no probe, no request), resumes a half-done one from its checkpoints, and
redoes a changed source (a new id). Each video is worked on under a lock, so overlapping runs on
one --out never share a video.

Every failure is an outcome: one input, chunk or disk fails its video and the batch goes on. Two
things end a run early, cleanly, with summary.json listing every input: a refused key (AuthError,
exit 2) and a stop request (SIGTERM/SIGINT: chunks in flight finish, nothing new is sent). An API
found unreachable fails the videos in flight with that reason, and the rest fail fast with it."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from pipeline.backends import Backend
from pipeline.backends.factory import make_backend
from pipeline.batch import inputs
from pipeline.batch.billing import Budget, Charges
from pipeline.batch.context import HOUR, Context
from pipeline.batch.identity import video_id
from pipeline.batch.pool import predict_pool
from pipeline.batch.stopping import StopCheck, StopFlag
from pipeline.batch.store import RunKey, VideoStore
from pipeline.batch.summary import Bookkeeper, Outcome, Status, failed, write_summary
from pipeline.batch.video import RunningVideo, VideoJob
from pipeline.errors import AuthError, ConfigError, Interrupted, UnreachableError
from pipeline.media import proc
from pipeline.output.files import prepare_out
from pipeline.send.stage import Stager
from pipeline.send.transport import Lifetime
from pipeline.settings import Settings
from pipeline.types import ChunkResult

log = logging.getLogger(__name__)

_VIDEOS_IN_FLIGHT = 2  # split the next video while this one's chunks are predicted


class ChunkCounter(Protocol):
    """What a run tells a progress display (the command line's: _cli.progress.Progress)."""

    def add(self, total: int, already_done: int) -> None: ...
    def done(self, count: int = 1, *, frames: int = 0) -> None: ...


def _lifetime(backend: Backend) -> Lifetime:
    """How long the URLs sent must stay valid: the backend knows its deadlines and retries."""
    found: Lifetime | None = getattr(backend, "url_lifetime", None)
    return found or (lambda chunk, made: HOUR)


def stager_for(settings: Settings) -> Stager | None:
    """Where chunks are staged: URL mode to an API, with --stage."""
    place = settings.staging.place
    if place is None or not settings.sends_urls:
        return None
    return Stager(place, endpoint_url=settings.staging.endpoint_url)


def preflight(settings: Settings, sources: list[inputs.Source]) -> None:
    """Raise ConfigError, before anything is sent, if URL mode has nowhere to stage the
    local files among `sources`, or the staging bucket is missing or refuses us."""
    if not settings.sends_urls:
        return
    stager = stager_for(settings)
    local = [s.display for s in sources if not s.error and not s.is_url]
    if stager is None and local:
        more = f" and {len(local) - 1} more" if len(local) > 1 else ""
        raise ConfigError(
            f"--mode url sends chunks as URLs the API fetches, so local files must be "
            f"staged first: give --stage s3://BUCKET/PREFIX (local input: {local[0]}{more})")
    if stager is not None:
        stager.check()


def skipped_if_done(settings: Settings, out: Path, source: inputs.Source) -> Outcome | None:
    """A "skipped" outcome if this local file's video is already done and its outputs are
    current (read: its id and outputs.json; no probe, no lock, no request, no backend: a Dask
    client tells the done ones apart without a key or a model), else None."""
    if source.error or source.is_url or settings.batch.force:
        return None
    try:
        vid = video_id(source.path) if Path(source.path).is_file() else None
    except (OSError, ValueError):
        vid = None
    store = None if vid is None else VideoStore(out, vid, RunKey.of(settings),
                                                settings.outputs)
    if store is None or not store.done() or not store.outputs_current():
        return None
    return Outcome(source.display, Status.SKIPPED, id=vid, note="already done")


class Runner:
    """Processes inputs into `out`; a rerun skips finished videos and finished chunks."""

    def __init__(self, settings: Settings, out: str, backend: Backend | None = None,
                 progress: ChunkCounter | None = None, stop: StopCheck | None = None,
                 summary: bool = True, url_lifetime: Lifetime | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 budget: Charges | None = None) -> None:
        self.settings = settings
        proc.configure(settings.deadlines)  # this process's ffprobe/ffmpeg (a Dask worker's too)
        self.out = Path(out)
        self.stop: StopCheck = stop or StopFlag()
        self._own_backend = backend is None
        interrupt = None
        if isinstance(self.stop, StopFlag):  # abandoning: requests cancelled, children killed
            interrupt = self.stop.abandoned
            self.stop.on_abandon(proc.kill_all)
        self.backend = backend or make_backend(settings, interrupt=interrupt)
        self.progress = progress
        self.on_outcome = on_outcome  # told of each input as it ends (the completion callback)
        self.summary = summary  # False on Dask workers: the client writes summary.json
        self.ctx = Context(settings, self.out, self.backend, self.stop, RunKey.of(settings),
                           lifetime=url_lifetime or _lifetime(self.backend),
                           stager=stager_for(settings),
                           budget=budget or Budget(settings.batch.max_billed_frames))
        self.outcomes: list[Outcome] = []
        self._halt: BaseException | None = None  # an AuthError or UnreachableError seen
        self.summary_error: str | None = None
        self._books: Bookkeeper | None = None

    # -- the whole run ---------------------------------------------------------------------
    def run(self, sources: list[str]) -> list[Outcome]:
        """Process every input; raise AuthError or Interrupted (after writing the summary)."""
        expanded = inputs.expand(sources, exclude=str(self.out))
        preflight(self.settings, expanded)
        prepare_out(self.out)
        self.outcomes = [Outcome(s.display, Status.PENDING) for s in expanded]
        self._open_books()
        try:
            with predict_pool(self.settings.api.workers, self.backend) as pool:
                self._run_all(expanded, pool)
        finally:
            if self._own_backend:
                self.backend.close()
            if self._books is not None:
                self._books.close()
        if isinstance(self._halt, AuthError):
            raise self._halt
        if self.stop.is_set():
            raise Interrupted("stopped before every input was done")
        return self.outcomes

    def process(self, source: inputs.Source) -> Outcome:
        """One input, start to end, in its own pool (a Dask task); summary.json is not written."""
        job = VideoJob(source, self.ctx)
        ready = job.prepare()
        if isinstance(ready, Outcome):
            return ready
        with predict_pool(self.settings.api.workers, self.backend) as pool:
            return job.finish(job.run(ready, pool))

    def _run_all(self, sources: list[inputs.Source], pool: ThreadPoolExecutor) -> None:
        pending: deque[tuple[int, VideoJob, RunningVideo]] = deque()
        try:
            for i, source in enumerate(sources):
                if self.stop.is_set() or isinstance(self._halt, AuthError):
                    break
                if isinstance(self._halt, UnreachableError):
                    self._record(i, failed(source.display, self._halt))
                    continue
                job = VideoJob(source, self.ctx)
                ready = job.prepare()
                if isinstance(ready, Outcome):
                    self._record(i, ready, job)
                    continue
                running = job.run(ready, pool)
                self._count(running)
                pending.append((i, job, running))
                while len(pending) >= _VIDEOS_IN_FLIGHT:
                    self._finish(*pending.popleft())
            while pending:
                self._finish(*pending.popleft())
        finally:
            for _, job, running in pending:  # only on an exception not a video's failure
                running.cancel()
                job.release()
            self._mark_not_started()
            self._write_summary()

    def _finish(self, index: int, job: VideoJob, running: RunningVideo) -> None:
        self._record(index, job.finish(running), job)

    def _record(self, index: int, outcome: Outcome, job: VideoJob | None = None) -> None:
        self.outcomes[index] = outcome
        if job is not None and isinstance(job.error, AuthError | UnreachableError):
            self._halt = self._halt or job.error
        self._keep_books(lambda books: books.record(index, outcome))
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if outcome.status == Status.FAILED:
            log.error("%s", outcome.error)
        else:
            log.info("%s: %s%s (%d chunks, %d requests)", outcome.source, outcome.status,
                     f": {outcome.note}" if outcome.note else "", outcome.chunks,
                     outcome.requests)

    def _mark_not_started(self) -> None:
        """Inputs never reached: the reason the run stopped early."""
        why = (f"not processed: the run stopped ({self._halt})" if self._halt is not None
               and not self.stop.is_set() else "interrupted before it started; rerun to resume")
        self.outcomes[:] = _pending_failed(self.outcomes, why)

    def _count(self, running: RunningVideo) -> None:
        if self.progress is None:
            return
        self.progress.add(len(running.video.chunks), len(running.video.saved))
        for future in running.futures.values():
            future.add_done_callback(self._count_done)

    def _count_done(self, future: Future[ChunkResult]) -> None:
        ok = not future.cancelled() and future.exception() is None
        assert self.progress is not None, "counted only with a display"
        self.progress.done(1, frames=len(future.result().frames) if ok else 0)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _open_books(self) -> None:
        """summary.json with every input pending, and a fresh progress.jsonl; a forced exit
        (batch.stopping) writes summary.json as it stands."""
        if not self.summary:
            return
        if isinstance(self.stop, StopFlag):
            self.stop.before_forced_exit(self._last_words)
        try:
            self._books = Bookkeeper(self.out, self.outcomes)
        except OSError as exc:
            self._summary_failed(exc)

    def _keep_books(self, write: Callable[[Bookkeeper], None]) -> None:
        if self._books is None:
            return
        try:
            write(self._books)
            self.summary_error = None
        except OSError as exc:
            self._summary_failed(exc)

    def _write_summary(self) -> None:
        if not self.summary:
            return
        report = getattr(self.backend, "rate_report", None)  # the clarifai backend's pacing
        try:
            write_summary(self.out, self.outcomes, rate=report().as_dict() if report else None)
            self.summary_error = None
        except OSError as exc:
            self._summary_failed(exc)

    def _summary_failed(self, exc: OSError) -> None:
        self.summary_error = f"{self.out / 'summary.json'}: {exc.strerror or exc}"
        log.error("cannot write summary.json: %s", exc.strerror or exc)

    def _last_words(self) -> None:
        """The process is ending before the run unwound: summary.json as it stands, every input
        not finished said to be interrupted."""
        why = "interrupted; rerun to resume"
        write_summary(self.out, _pending_failed(list(self.outcomes), why))


def _pending_failed(outcomes: list[Outcome], why: str) -> list[Outcome]:
    return [failed(o.source, why) if o.status == Status.PENDING else o for o in outcomes]
