"""One video from source to timeline: fetch, identify, lock, probe, split, predict, merge.

`start` does the work up to submitting the chunks to the run's pool; `finish` waits for them and
writes the outputs. Neither raises for anything one video can do wrong: every failure becomes
the video's Outcome (an auth failure too; the runner stops the run on it)."""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import CancelledError, Executor, Future
from pathlib import Path

from pipeline.batch import settle
from pipeline.batch.context import Context
from pipeline.batch.inputs import Source
from pipeline.batch.locks import VideoLock
from pipeline.batch.origin import Origin
from pipeline.batch.store import VideoStore
from pipeline.batch.summary import Outcome, Status, failed
from pipeline.errors import AuthError, InputError, Interrupted, LockedError, StillBeingWritten
from pipeline.merge import merge
from pipeline.predict import predict_chunk
from pipeline.send.prepare import prepare
from pipeline.send.senders import ReferenceSender, Sender
from pipeline.send.strategy import Sending, Strategy
from pipeline.types import Chunk, ChunkResult, Limits, VideoInfo

log = logging.getLogger(__name__)


class VideoJob:
    def __init__(self, source: Source, ctx: Context) -> None:
        self.source = source
        self.ctx = ctx
        self.shown = source.display
        self.started = time.monotonic()
        self.outcome = Outcome(self.shown)
        self.store: VideoStore | None = None
        self.info: VideoInfo | None = None
        self.chunks: list[Chunk] = []
        self.futures: dict[int, Future[ChunkResult]] = {}
        self.origin = Origin(source, ctx)
        self.sending: Sending | None = None  # the strategy's chunks and their media
        self.error: BaseException | None = None  # what failed it, for the runner to weigh
        self._lock: VideoLock | None = None
        self._state: settle.FileState | None = None  # a local source as its run found it

    @property
    def sender(self) -> Sender:
        return self.origin.sender

    # -- up to the pool --------------------------------------------------------------------
    def start(self, pool: Executor) -> Outcome | None:
        """Submit the chunks still to predict; the outcome instead, if the video ends here."""
        try:
            early = self._prepare()
            if early is None:
                self._submit(pool)
            return self._end(early) if early is not None else None
        except Exception as exc:
            return self._end(self._failure(exc))
        except BaseException:
            self.release()
            raise

    def _prepare(self) -> Outcome | None:
        if self.source.error:
            return failed(self.shown, self.source.error)
        if not self.source.is_url and Path(self.source.path).is_file():
            self._state = settle.settled(self.source.path, self.ctx.settings.settle_seconds,
                                         self.ctx.stop)
        video_id = self.origin.identify()
        self.store = store = VideoStore(self.ctx.out, video_id, self.ctx.key,
                                        self.ctx.settings.outputs)
        self.outcome = self.outcome.but(id=video_id)
        held = self._lock_unless_done(store)
        if held is not None:
            return held
        self.info = self.origin.probe(video_id)
        self.sender.sweep()  # what a run that crashed left staged for this video
        self.chunks = self._chunks(self.info, store)
        return None

    def _lock_unless_done(self, store: VideoStore) -> Outcome | None:
        """Take the video's lock; a skipped outcome instead if it is done or another run has it.
        Done is checked again under the lock: the other run may have just finished it. A done
        video whose outputs were made with other settings gets them again, under the lock."""
        if self._done(store) and store.outputs_current():
            return self.outcome.but(status=Status.SKIPPED, note="already done")
        lock = VideoLock(self.ctx.out, store.root.name)
        try:
            lock.acquire(wait=self.ctx.settings.lock_wait, stop=self.ctx.stop)
        except LockedError as exc:
            if self._done(store):
                return self.outcome.but(status=Status.SKIPPED, note="already done")
            log.warning("%s: %s; skipped it", self.shown, exc)
            return self.outcome.but(status=Status.SKIPPED, note=f"{exc}; skipped it")
        self._lock = lock
        if not self._done(store):
            return None
        if store.outputs_current():
            return self.outcome.but(status=Status.SKIPPED, note="already done (by another run)")
        if not store.rewrite_outputs():
            return None  # a saved result is damaged: its chunk is predicted again
        log.info("%s: already done; outputs rewritten from its saved results", self.shown)
        return self.outcome.but(status=Status.SKIPPED,
                                note="already done; outputs rewritten from its saved results")

    def _done(self, store: VideoStore) -> bool:
        return not self.ctx.settings.force and store.done()

    def _chunks(self, info: VideoInfo, store: VideoStore) -> list[Chunk]:
        """The strategy's chunks: as a previous run saved them, or made now (an interrupted
        run's proxy or images are taken as they are: they are made the same, byte for byte)."""
        settings = self.ctx.settings
        self.sending = sending = prepare(Strategy.of(settings), info, self.ctx.key.limits,
                                         store.chunk_media, keep_audio=settings.keep_audio)
        self.origin.carry(sending)
        saved = None if settings.force else store.load_chunks(sending.source)
        if saved is not None:
            return saved
        chunks = sending.chunks()
        store.save_chunks(sending.source, chunks)
        if settings.force:
            store.clear_results()
        return chunks

    def _submit(self, pool: Executor) -> None:
        assert self.store is not None
        saved = self.store.results(self.chunks)
        self.outcome = self.outcome.but(chunks=len(self.chunks), resumed=len(saved))
        for chunk in self.chunks:
            if chunk.index not in saved:
                self.futures[chunk.index] = pool.submit(self._predict, chunk)

    def _predict(self, chunk: Chunk) -> ChunkResult:
        if self.ctx.stop.is_set():
            raise Interrupted(f"stopped before chunk {chunk.index} was sent")
        assert self.store is not None and self.sending is not None
        ctx = self.ctx
        # What the session staged is deleted when it closes: once the result is saved.
        with self.sender.session() as opener:
            result = predict_chunk(ctx.backend, chunk, ctx.settings.sample_ms, ctx.key.limits,
                                   self._recut, opener)
            self.store.save_result(chunk, result)
        return result

    def _recut(self, chunk: Chunk, limits: Limits) -> list[Chunk]:
        assert self.sending is not None
        if isinstance(self.sender, ReferenceSender):
            raise InputError(self.shown, "the API refused it as too large, though it is within "
                             "--max-bytes and --max-seconds; lower them to have it cut")
        return self.sending.recut(chunk, limits)

    # -- after the pool --------------------------------------------------------------------
    def finish(self) -> Outcome:
        """Wait for the chunks, then merge and write; the video's outcome either way."""
        try:
            sent, error = self._wait()
            requests = sum(r.attempts for r in sent) + getattr(error, "attempts", 0)
            self.outcome = self.outcome.but(requests=requests)
            if error is not None:
                return self._end(self._failure(error))
            self._write()
            return self._end(self.outcome.but(status=Status.DONE))
        except Exception as exc:
            return self._end(self._failure(exc))
        except BaseException:
            self.cancel()
            self.release()
            raise

    def _wait(self) -> tuple[list[ChunkResult], BaseException | None]:
        """Every chunk's result; after the first failure the chunks not yet started are
        cancelled, those in flight finish (and are saved)."""
        sent: list[ChunkResult] = []
        error: BaseException | None = None
        for future in self.futures.values():
            try:
                sent.append(future.result())
            except CancelledError:
                continue
            except Exception as exc:
                if error is None:
                    error = exc
                    log.debug("%s: chunk failed", self.shown, exc_info=exc)
                    self.cancel()
        return sent, error

    def cancel(self) -> None:
        for future in self.futures.values():
            future.cancel()

    def _write(self) -> None:
        assert self.store is not None and self.info is not None
        results = self.store.results(self.chunks)
        missing = [c.index for c in self.chunks if c.index not in results]
        if missing:
            raise Interrupted(f"chunks {missing} have no saved result")
        if self._state is not None:  # never done from a file that changed under us
            settle.unchanged(self.source.path, self._state, self.ctx.settings.settle_seconds)
        self.store.write_timeline(
            info=dataclasses.replace(self.info, path=self.shown), chunks=self.chunks,
            attempts={i: r.attempts for i, r in results.items()},
            frames=merge(self.chunks, results))

    # -- endings -------------------------------------------------------------------------------
    def _failure(self, exc: BaseException) -> Outcome:
        self.error = exc
        if isinstance(exc, StillBeingWritten):
            log.warning("%s: deferred: %s", self.shown, exc.problem)
            return self.outcome.but(status=Status.DEFERRED, note=exc.problem,
                                    chunks=len(self.chunks))
        log.debug("%s failed", self.shown, exc_info=exc)
        saved = len(self.store.results(self.chunks)) if self.store and self.chunks else 0
        fields = {"id": self.outcome.id, "chunks": len(self.chunks), "resumed": saved,
                  "requests": self.outcome.requests}
        if self.ctx.stop.is_set() and not isinstance(exc, AuthError):
            # A signal also reaches our ffmpeg children; their failure is the interruption.
            of = f" ({saved} of {len(self.chunks)} chunks saved)" if self.chunks else ""
            return failed(self.shown, f"interrupted{of}; rerun to resume", **fields)
        return failed(self.shown, exc, **fields)

    def _end(self, outcome: Outcome) -> Outcome:
        if self._lock is not None:
            self.sender.sweep()  # anything a failed chunk or a failed delete left staged
        self.release()
        return outcome.but(seconds=time.monotonic() - self.started)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.origin.release()
