"""One video from source to timeline, in two steps: `prepare` it into one frozen value (found,
identified, locked, probed, its chunks made, its transport chosen), then `run` it (its chunks on
the run's pool) and `finish` it (wait, merge, write). None of them raises for anything one video
can do wrong: every failure becomes the video's Outcome (an auth failure too; the runner stops
the run on it)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import merge, skip, traffic
from pipeline.batch import settle
from pipeline.batch.billing import Tally
from pipeline.batch.context import Context
from pipeline.batch.inputs import Source
from pipeline.batch.locks import VideoLock
from pipeline.batch.origin import Origin, Probed
from pipeline.batch.store import VideoStore
from pipeline.batch.summary import Outcome, Status, failed
from pipeline.errors import (
    AuthError,
    BudgetReached,
    InputError,
    Interrupted,
    LockedError,
    StillBeingWritten,
)
from pipeline.predict import predict_chunk
from pipeline.sampling import chunk_grid
from pipeline.send.strategy import PreparedChunks, Skipper
from pipeline.send.transport import ReferenceTransport, Transport
from pipeline.types import Chunk, ChunkResult, Frame, Limits, VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedVideo:
    """A video ready to run: where its results go, what it holds, its chunks (as saved or made
    now) and the saved results among them, and how they travel."""

    id: str
    store: VideoStore
    info: VideoInfo
    chunks: tuple[Chunk, ...]
    saved: frozenset[int]  # chunks whose result an earlier run saved
    prepared: PreparedChunks  # the strategy's: what a request carries for each chunk
    transport: Transport
    state: settle.FileState | None  # a local source as its run found it
    # --skip-similar: which instants are sent and which carried (saved with the chunk list)
    selection: skip.Selection | None = None
    billed: Tally = dataclasses.field(default_factory=Tally)  # by this run's requests

    @property
    def sampled(self) -> int:
        """The video's sampled instants."""
        if self.selection is not None:
            return self.selection.count
        return sum(chunk_grid(c.start, c.end, None, self.store.key.sample_ms).count
                   for c in self.chunks)


@dataclass(frozen=True)
class RunningVideo:
    """A prepared video whose unsaved chunks are on the pool."""

    video: PreparedVideo
    futures: Mapping[int, Future[ChunkResult]]
    pool: Executor  # where a further round of a video that skips goes
    # Set once the video has failed: a chunk already started but still waiting for its turn
    # (a gated pool) sends nothing, as a chunk not yet started is cancelled.
    halted: threading.Event = dataclasses.field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.halted.set()
        for future in self.futures.values():
            future.cancel()


class VideoJob:
    """Prepares, runs and finishes one video; holds its lock and its download until `release`."""

    def __init__(self, source: Source, ctx: Context) -> None:
        self.source = source
        self.ctx = ctx
        self.shown = source.display
        self.started = time.monotonic()
        self.origin = Origin(source, ctx)
        self.error: BaseException | None = None  # what failed it, for the runner to weigh
        self.traffic = traffic.Traffic()
        self._lock: VideoLock | None = None
        self._id: str | None = None

    # -- step 1: prepare -----------------------------------------------------------------------
    def prepare(self) -> PreparedVideo | Outcome:
        """The video ready to run; its outcome instead if it ends here (failed, deferred,
        already done, held by another run)."""
        try:
            return self._prepare()
        except Exception as exc:  # noqa: BLE001 (anything, a bug too, fails this video alone)
            return self._end(self._failure(exc))
        except BaseException:
            self.release()
            raise

    def _prepare(self) -> PreparedVideo | Outcome:
        if self.source.error:
            return failed(self.shown, self.source.error)
        state = None
        if not self.source.is_url and Path(self.source.path).is_file():
            state = settle.settled(self.source.path, self.ctx.settings.batch.settle_seconds,
                                   self.ctx.stop)
        self._id = video_id = self.origin.identify()
        store = VideoStore(self.ctx.out, video_id, self.ctx.key, self.ctx.settings.outputs)
        held = self._lock_unless_done(store)
        if held is not None:
            return self._end(held)
        if self.ctx.budget.closed:  # nothing more is sent: not even probed
            return self._end(Outcome(self.shown, Status.STOPPED, id=video_id,
                                     note="billing budget reached before it was started; "
                                          "rerun with a larger --max-billed-frames to finish"))
        probed = self.origin.probe()
        self.origin.sweep_staged(video_id)
        return self._ready(video_id, store, probed, state)

    def _ready(self, video_id: str, store: VideoStore, probed: Probed,
               state: settle.FileState | None) -> PreparedVideo:
        """The strategy's chunks: as a previous run saved them, or made now (an interrupted
        run's proxy or images are taken as they are: they are made the same, byte for byte)."""
        settings = self.ctx.settings
        prepared = settings.strategy.prepare(probed.info, self.ctx.key.limits,
                                             store.chunk_media, settings.sample_ms)
        force = settings.batch.force
        chunks = None if force else store.load_chunks(prepared.source)
        selection = None if chunks is None else store.load_selection()
        if chunks is not None and prepared.skipper is not None and selection is not None \
                and not _fits(selection, chunks, prepared.skipper):
            selection = None  # saved for another cut of the video, or damaged: made anew
        if chunks is None or (prepared.skipper is not None and selection is None):
            chunks, selection = _first_round(prepared)
            store.save_chunks(prepared.source, chunks, selection)
            if force:
                store.clear_results()
        saved = frozenset(store.results(chunks))
        return PreparedVideo(video_id, store, probed.info, tuple(chunks), saved, prepared,
                             self.origin.transport(probed, prepared, video_id), state,
                             selection if prepared.skipper is not None else None)

    def _lock_unless_done(self, store: VideoStore) -> Outcome | None:
        """Take the video's lock; a skipped outcome instead if it is done or another run has it.
        Done is checked again under the lock: the other run may have just finished it. A done
        video whose outputs were made with other settings gets them again, under the lock."""
        if self._done(store) and store.outputs_current():
            return self._skipped("already done")
        lock = VideoLock(self.ctx.out, store.root.name)
        try:
            lock.acquire(wait=self.ctx.settings.batch.lock_wait, stop=self.ctx.stop)
        except LockedError as exc:
            if self._done(store):
                return self._skipped("already done")
            log.warning("%s: %s; skipped it", self.shown, exc)
            return self._skipped(f"{exc}; skipped it")
        self._lock = lock
        if not self._done(store):
            return None
        if store.outputs_current():
            return self._skipped("already done (by another run)")
        if not store.rewrite_outputs():
            return None  # a saved result is damaged: its chunk is predicted again
        log.info("%s: already done; outputs rewritten from its saved results", self.shown)
        return self._skipped("already done; outputs rewritten from its saved results")

    def _done(self, store: VideoStore) -> bool:
        return not self.ctx.settings.batch.force and store.done()

    def _skipped(self, note: str) -> Outcome:
        return Outcome(self.shown, Status.SKIPPED, id=self._id, note=note)

    # -- step 2: run ---------------------------------------------------------------------------
    def run(self, video: PreparedVideo, pool: Executor) -> RunningVideo:
        """The chunks still to predict, submitted to the run's pool."""
        halted = threading.Event()
        futures = {c.index: pool.submit(self._predict, video, c, halted) for c in video.chunks
                   if c.index not in video.saved}
        return RunningVideo(video, futures, pool, halted)

    def _predict(self, video: PreparedVideo, chunk: Chunk,
                 halted: threading.Event | None = None) -> ChunkResult:
        if self.ctx.stop.is_set():
            raise Interrupted(f"stopped before chunk {chunk.index} was sent")
        if halted is not None and halted.is_set():
            raise Interrupted(f"chunk {chunk.index} not sent: another chunk of the video failed")
        ctx = self.ctx

        def bill(frames: int) -> None:
            ctx.budget.charge(frames)  # before the request: over the budget, it stays unsent
            video.billed.add(frames)

        def recut(piece: Chunk, limits: Limits) -> list[Chunk]:
            if isinstance(video.transport, ReferenceTransport):
                raise InputError(self.shown, "the API refused it as too large, though it is "
                                 "within --max-bytes and --max-seconds; lower them to have it "
                                 "cut")
            return video.prepared.recut(piece, limits)

        # What the session staged is deleted when it closes: once the result is saved.
        backend = traffic.Metered(ctx.backend, self.traffic,
                                  sends=ctx.settings.api.backend != "local")
        with video.transport.session() as media_of:
            result = predict_chunk(backend, chunk, ctx.settings.sample_ms, ctx.key.limits,
                                   recut, media_of, bill=bill)
            video.store.save_result(chunk, result)
        return result

    # -- step 3: finish ------------------------------------------------------------------------
    def finish(self, running: RunningVideo) -> Outcome:
        """Wait for the chunks (and a video that skips, for each further round its audits
        call for), then merge and write; the video's outcome either way."""
        video = running.video
        requests = 0
        try:
            while True:
                sent, error = _wait(running, self.shown)
                requests += sum(r.attempts for r in sent) + getattr(error, "attempts", 0)
                if error is not None:
                    return self._end(self._failure(error, video, requests), video)
                more = self._next_round(video)
                if more is None:
                    break
                video = more
                running = self.run(video, running.pool)
            audit = self._write(video)
            return self._end(self._outcome(video, Status.DONE, requests, audit=audit), video)
        except Exception as exc:  # noqa: BLE001 (anything, a bug too, fails this video alone)
            return self._end(self._failure(exc, video, requests), video)
        except BaseException:
            running.cancel()
            self.release()
            raise

    def _next_round(self, video: PreparedVideo) -> PreparedVideo | None:
        """A video that skips, once a round's answers are in: its selection tightened where
        its audits disagree, and the chunks of what that adds (saved with the chunk list, so a
        resumed run goes on from there); None when no round follows."""
        skipper = video.prepared.skipper
        if video.selection is None or skipper is None:
            return None
        scored = self._scored(video, video.selection)
        found = skip.next_round(skipper.signatures(), skipper.rules, video.selection, scored)
        if found is None:
            return None
        added = sorted(set(found.sent) - set(video.selection.sent))
        chunks = (*video.chunks, *skipper.carrying(added, len(video.chunks)))
        log.info("%s: the audit of carried frames disagrees from %d ms on; threshold %.4g "
                 "there (%d more frames sent)", self.shown,
                 skip.instant_ms(found.regimes[-1].start, self.ctx.settings.sample_ms),
                 found.regimes[-1].threshold, len(added))
        video.store.save_chunks(video.prepared.source, chunks, found)
        return dataclasses.replace(video, chunks=chunks, selection=found,
                                   saved=frozenset(video.store.results(chunks)))

    def _scored(self, video: PreparedVideo, selection: skip.Selection) -> dict[int, Frame]:
        """The sent instants' saved answers, every one of them."""
        results = video.store.results(video.chunks)
        scored = skip.by_instant(selection, (f for r in results.values() for f in r.frames),
                                 self.ctx.settings.sample_ms)
        lost = skip.missing(selection, scored)
        if lost:
            raise Interrupted(f"instants {lost[:5]} were sent but have no saved answer")
        return scored

    def _write(self, video: PreparedVideo) -> dict[str, Any] | None:
        """The video's outputs; for a video that skips, what its audit found."""
        results = video.store.results(video.chunks)
        missing = [c.index for c in video.chunks if c.index not in results]
        if missing:
            raise Interrupted(f"chunks {missing} have no saved result")
        if video.state is not None:  # never done from a file that changed under us
            settle.unchanged(self.source.path, video.state,
                             self.ctx.settings.batch.settle_seconds)
        sample_ms = self.ctx.settings.sample_ms
        skipping = None if video.selection is None else self._skipping(video, video.selection)
        video.store.write_timeline(
            info=dataclasses.replace(video.info, path=self.shown), chunks=video.chunks,
            attempts={i: r.attempts for i, r in results.items()},
            frames=merge.timeline(video.chunks, results, video.selection, sample_ms),
            skipping=skipping)
        return None if skipping is None else skipping["audit"]

    def _skipping(self, video: PreparedVideo, selection: skip.Selection) -> dict[str, Any]:
        """timeline.json's account of a video that skipped: its settings, what it sent and
        carried, the audit's agreement and where its threshold tightened."""
        sample_ms = self.ctx.settings.sample_ms
        found = skip.audit(selection, self._scored(video, selection))
        tightened = [{"from_ms": skip.instant_ms(r.start, sample_ms), "threshold": r.threshold}
                     for r in selection.tightened]
        return {"settings": dict(self.ctx.key.strategy).get("skip"),
                "frames_sampled": selection.count, "frames_sent": len(selection.sent),
                "frames_carried": selection.carried,
                "audit": {**found.as_dict(), "tightened": tightened}}

    # -- endings -------------------------------------------------------------------------------
    def _outcome(self, video: PreparedVideo | None, status: Status, requests: int = 0,
                 note: str | None = None, audit: dict[str, Any] | None = None) -> Outcome:
        return Outcome(self.shown, status, id=self._id, note=note, requests=requests,
                       chunks=len(video.chunks) if video else 0,
                       resumed=len(video.saved) if video else 0, **_billing(video),
                       audit=audit)

    def _failure(self, exc: BaseException, video: PreparedVideo | None = None,
                 requests: int = 0) -> Outcome:
        self.error = exc
        if isinstance(exc, StillBeingWritten):
            log.warning("%s: deferred: %s", self.shown, exc.problem)
            return self._outcome(video, Status.DEFERRED, requests, note=exc.problem)
        if isinstance(exc, BudgetReached):
            return self._outcome(video, Status.STOPPED, requests, note=str(exc))
        log.debug("%s failed", self.shown, exc_info=exc)
        saved = len(video.store.results(video.chunks)) if video is not None else 0
        fields = {"id": self._id, "chunks": len(video.chunks) if video else 0,
                  "resumed": saved, "requests": requests, **_billing(video)}
        if self.ctx.stop.is_set() and not isinstance(exc, AuthError):
            # A signal also reaches our ffmpeg children; their failure is the interruption.
            of = f" ({saved} of {len(video.chunks)} chunks saved)" if video else ""
            return failed(self.shown, f"interrupted{of}; rerun to resume", **fields)
        return failed(self.shown, exc, **fields)

    def _end(self, outcome: Outcome, video: PreparedVideo | None = None) -> Outcome:
        if video is not None:
            video.transport.sweep()  # anything a failed chunk or a failed delete left staged
        self.release()
        spent = self.traffic.counts()
        return dataclasses.replace(outcome, seconds=time.monotonic() - self.started,
                                   retries=spent.retries, throttles=spent.throttles,
                                   bytes_sent=spent.bytes_sent)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.origin.release()


def _first_round(prepared: PreparedChunks) -> tuple[list[Chunk], skip.Selection | None]:
    """A video's chunks as first made: all of them; for a video that skips, those of the
    instants its first walk chose and audited."""
    skipper: Skipper | None = prepared.skipper
    if skipper is None:
        return prepared.chunks(), None
    selection = skip.select(skipper.signatures(), skipper.rules)
    return skipper.carrying(selection.sent, 0), selection


def _fits(selection: skip.Selection, chunks: list[Chunk], skipper: Skipper) -> bool:
    """A saved selection this video can go on from: one of its instants, and chunks that
    carry every instant it sends (so each will have an answer)."""
    if selection.count != skipper.signatures().count:
        return False
    if any(c.instants is None for c in chunks):
        return True  # chunks that do not list their instants: nothing more to compare
    return set(selection.sent) <= {i for c in chunks for i in c.instants or ()}


def _billing(video: PreparedVideo | None) -> dict[str, Any]:
    """A video's frames sampled, billed by this run, and carried (as planned, if it is not
    done)."""
    if video is None:
        return {}
    carried = video.selection.carried if video.selection is not None else 0
    return {"frames_sampled": video.sampled, "frames_billed": video.billed.frames,
            "frames_carried": carried}


def _wait(running: RunningVideo, shown: str) -> tuple[list[ChunkResult], BaseException | None]:
    """Every chunk's result; after the first failure the chunks not yet started are
    cancelled, those in flight finish (and are saved)."""
    sent: list[ChunkResult] = []
    error: BaseException | None = None
    for future in running.futures.values():
        try:
            sent.append(future.result())
        except CancelledError:
            continue
        except Exception as exc:  # noqa: BLE001 (any chunk's failure, a bug too, is the video's)
            if error is None:
                error = exc
                log.debug("%s: chunk failed", shown, exc_info=exc)
                running.cancel()
    return sent, error
