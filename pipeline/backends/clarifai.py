"""The `clarifai` backend: PostModelOutputs through clarifai-grpc, retried and rate limited.

One backend object serves every chunk of every video of a run, from several threads: the gRPC
channel is thread-safe, the rate limiter is shared, and the first request goes alone so that a
wrong key costs one request, not one per chunk in flight. Once the API has stayed unreachable
through a whole retry schedule, every later request fails at once with the same reason."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_pb2

from pipeline import redact, traffic
from pipeline.backends import models
from pipeline.backends.adaptive import Ticket, stated_limit
from pipeline.backends.clarifai_status import (
    SUCCESS,
    SUCCESS_CODES,
    classify,
    code_name,
    rpc_error,
)
from pipeline.backends.ratecontrol import (
    AdaptiveRate,
    FixedRate,
    InFlightGate,
    RateControl,
    RateReport,
    Sleep,
)
from pipeline.backends.retry import RetryConfig, policy
from pipeline.errors import (
    AuthError,
    BackendError,
    ConfigError,
    FetchFailedError,
    ImplausibleAnswerError,
    Interrupted,
    OverLimitError,
    RejectedInputError,
    TransientBackendError,
    UnreachableError,
)
from pipeline.settings import Api
from pipeline.types import (
    Chunk,
    ChunkResult,
    Clock,
    Concept,
    Frame,
    ImageBatch,
    Media,
    VideoUrl,
)

log = logging.getLogger(__name__)
_TIMEOUT = "DEADLINE_EXCEEDED"
_POLL_S = 0.2  # how often a request in flight looks whether the run is abandoning it
_PUSHBACK = "grpc-retry-pushback-ms"  # gRPC's way for a server to say when to retry
# Makes the pacing of a backend's requests, given the backend's interruptible sleep.
Pacing = Callable[[Sleep], RateControl]
NO_KEY = ("no Clarifai key: set the CLARIFAI_PAT environment variable to a personal access "
          "token (Clarifai: Settings > Secrets), e.g. `export CLARIFAI_PAT=...`")


@dataclass(frozen=True)
class Deadline:
    """Per-call deadline: Clarifai samples the whole video before answering, so longer chunks
    need longer (seconds = base + per_video_second x chunk length, capped)."""

    base: float = 60.0
    per_video_second: float = 1.0
    cap: float = 1800.0

    def for_chunk(self, chunk: Chunk) -> float:
        return min(self.cap, self.base + self.per_video_second * float(chunk.duration))


class _Key:
    """The PAT; its repr and str never show it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Key {self._value}"),)

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "<key>") if self._value else text

    def __repr__(self) -> str:
        return "<key hidden>"

    __str__ = __repr__


def open_channel(api_base: str | None, insecure: bool) -> grpc.Channel:
    """TLS to api.clarifai.com, TLS to `api_base`, or plain text to `api_base` (--insecure)."""
    if api_base is None:
        if insecure:
            raise ConfigError("--insecure needs --api-base HOST:PORT")
        return ClarifaiChannel.get_grpc_channel()
    if "://" in api_base:
        raise ConfigError(f"--api-base takes HOST:PORT, not a URL ({api_base!r})")
    if not insecure:
        return ClarifaiChannel.get_grpc_channel(base=api_base)
    host, _, port = api_base.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--api-base must be HOST:PORT, not {api_base!r}")
    return ClarifaiChannel.get_insecure_grpc_channel(base=host, port=int(port))


class ClarifaiBackend:
    """Sends each chunk's bytes to PostModelOutputs; answers with chunk-local frame times."""

    name = "clarifai"

    def __init__(self, model: str, *, key: str, api_base: str | None = None,
                 insecure: bool = False, user_id: str = "clarifai", app_id: str = "main",
                 rate_limit: float = 10.0, retry: RetryConfig | None = None,
                 deadline: Deadline | None = None, sleep: Callable[[float], None] | None = None,
                 rng: random.Random | None = None,
                 interrupt: threading.Event | None = None,
                 pacing: Pacing | None = None) -> None:
        # Set when the run abandons its work in flight (a second stage after SIGTERM): requests
        # are cancelled and every wait (retry backoff, the rate limiter) ends at once.
        self._interrupt = interrupt or threading.Event()
        sleep = sleep or self._pause
        self._key = _Key(key)
        self.model = models.model_info("clarifai", model)
        self._model_id = self.model.id
        self._user_app = resources_pb2.UserAppIDSet(user_id=user_id, app_id=app_id)
        self._channel = open_channel(api_base, insecure)
        self._stub = service_pb2_grpc.V2Stub(self._channel)
        # A fixed limit, unless `pacing` makes another (a learned rate: `ratecontrol`).
        self._rate = pacing(sleep) if pacing is not None else FixedRate(rate_limit, sleep)
        self._retry = retry or RetryConfig()
        self._retrying = policy(self._retry, sleep=sleep, rng=rng)
        self._deadline = deadline or Deadline()
        self._key_ok = threading.Event()
        self._first = threading.Lock()
        self._refused: AuthError | None = None
        self._down: UnreachableError | None = None
        self.requests = 0  # every request sent, for tests and reports
        self._count = threading.Lock()

    @classmethod
    def from_settings(cls, api: Api, interrupt: threading.Event | None = None,
                      pacing: Pacing | None = None) -> ClarifaiBackend:
        """The backend the settings describe; `pacing` replaces the pacing they name (a Dask
        worker's share of the cluster's one learned rate)."""
        if not api.api_key:
            raise ConfigError(NO_KEY)
        key = api.api_key
        if pacing is None and api.rate_limit == "auto":
            def pacing(sleep: Sleep) -> RateControl:
                return AdaptiveRate.for_key(
                    sleep, api_base=api.api_base, key=key, most=api.rate_limit_max,
                    cache_dir=api.cache_dir,
                    in_flight=api.workers if api.concurrency is None else None)
        fixed = 10.0 if api.rate_limit == "auto" else api.rate_limit
        return cls(api.model, key=key, api_base=api.api_base, insecure=api.insecure,
                   user_id=api.user_id, app_id=api.app_id, rate_limit=fixed,
                   retry=RetryConfig(paced=pacing is not None), interrupt=interrupt,
                   pacing=pacing)

    def _pause(self, seconds: float) -> None:
        """Wait (a backoff, a turn of the rate limiter), unless the run abandons its work."""
        if self._interrupt.wait(seconds):
            raise Interrupted("stopped while waiting to send a request")

    def __repr__(self) -> str:
        return (f"ClarifaiBackend(model={self._model_id!r}, "
                f"user_app={self._user_app.user_id}/{self._user_app.app_id}, key={self._key!r})")

    @property
    def gate(self) -> InFlightGate | None:
        """What holds the run's pool to the chunks in flight the rate needs (a learned rate
        without --concurrency), else None."""
        return self._rate.gate

    def rate_report(self) -> RateReport:
        return self._rate.report()

    def close(self) -> None:
        """The run is over: the rate it learned is logged and remembered."""
        self._rate.close()
        log.info("%s", self._rate.report().describe())
        self._channel.close()

    # -- one chunk -----------------------------------------------------------------------------
    def predict(self, chunk: Chunk, media: Media, sample_ms: int) -> ChunkResult:
        """A video chunk's frames on the chunk's clock; a frames batch's one an image, image n
        answering the chunk's instant n."""
        what = f"chunk {chunk.index}" + (f" ({media.label})" if isinstance(media, VideoUrl)
                                         else "")
        request = _Request(lambda url: self._request(media, sample_ms, url), media, what)
        tries: list[str | int | None] = []  # the error code of each failed attempt

        def attempt() -> tuple[Frame, ...]:
            try:
                return self._attempt(what, chunk, request.get())
            except FetchFailedError as exc:
                tries.append(exc.code)
                raise request.fetch_failed(exc) from None
            except BackendError as exc:
                tries.append(exc.code)
                if isinstance(exc, TransientBackendError) and exc.throttled:
                    traffic.throttled()
                raise

        try:
            frames = self._retrying.copy()(attempt)
        except BackendError as exc:
            final = self._verdict(exc, chunk, tries)
            final.attempts = len(tries)
            if final is exc:
                raise
            raise final from exc
        clock: Clock = "instants" if isinstance(media, ImageBatch) else "chunk"
        return ChunkResult(chunk.index, frames, len(tries) + 1, clock=clock)

    def url_lifetime(self, chunk: Chunk, made: int = 0) -> float:
        """Seconds a URL sent for `chunk` must stay valid: its wait for a turn (the first
        request, or one call's deadline), every retry the policy allows, the last call's
        deadline, and a minute to spare."""
        retrying = max(self._retry.max_seconds, self._retry.throttle_seconds)
        return retrying + 2 * self._deadline.for_chunk(chunk) + 60

    def _request(self, media: Media, sample_ms: int, url: str | None,
                 ) -> service_pb2.PostModelOutputsRequest:
        config = resources_pb2.OutputInfo(
            output_config=resources_pb2.OutputConfig(sample_ms=sample_ms))
        if isinstance(media, ImageBatch):  # one image input per instant
            inputs = [resources_pb2.Input(data=resources_pb2.Data(
                image=resources_pb2.Image(base64=image))) for image in media.images]
        else:
            video = (resources_pb2.Video(url=url) if isinstance(media, VideoUrl)
                     else resources_pb2.Video(base64=media.read()))
            inputs = [resources_pb2.Input(data=resources_pb2.Data(video=video))]
        return service_pb2.PostModelOutputsRequest(
            user_app_id=self._user_app, model_id=self._model_id,
            model=resources_pb2.Model(model_version=resources_pb2.ModelVersion(
                output_info=config)),
            inputs=inputs)

    def _verdict(self, exc: BackendError, chunk: Chunk, tries: list[str | int | None],
                 ) -> BackendError:
        """What the last failure means once retries are over: a chunk that timed out on every
        attempt is too much for one call (re-split it); an API that never answered is down."""
        if not isinstance(exc, TransientBackendError):
            return exc
        if len(tries) > 1 and set(tries) == {_TIMEOUT}:
            return OverLimitError(f"chunk {chunk.index}: timed out on all {len(tries)} attempts",
                                  code=_TIMEOUT)
        if exc.code == grpc.StatusCode.UNAVAILABLE.name:
            self._down = self._down or UnreachableError(
                f"API unreachable: {exc} (after {len(tries)} attempts)", code=exc.code)
            return self._down
        return exc

    def _attempt(self, what: str, chunk: Chunk, request: service_pb2.PostModelOutputsRequest,
                 ) -> tuple[Frame, ...]:
        """One request. Until one answer has shown the key works, requests go one at a time."""
        self._stop_if_refused()
        if not self._key_ok.is_set():
            with self._first:
                self._stop_if_refused()
                if not self._key_ok.is_set():
                    return self._first_exchange(what, chunk, request)
        return self._exchange(what, chunk, request)

    def _first_exchange(self, what: str, chunk: Chunk,
                        request: service_pb2.PostModelOutputsRequest) -> tuple[Frame, ...]:
        try:
            frames = self._exchange(what, chunk, request)
        except AuthError as exc:
            self._refused = exc
            raise
        except BackendError as exc:
            if isinstance(exc.code, int):  # Clarifai itself answered: the key got through
                self._key_ok.set()
            raise
        self._key_ok.set()
        return frames

    def _stop_if_refused(self) -> None:
        """A refused key or an API found down ends every request at once, unretried."""
        if self._refused is not None:
            raise AuthError(str(self._refused), code=self._refused.code)
        if self._down is not None:
            raise UnreachableError(str(self._down), code=self._down.code)

    def _exchange(self, what: str, chunk: Chunk, request: service_pb2.PostModelOutputsRequest,
                  ) -> tuple[Frame, ...]:
        ticket = self._rate.start()
        with self._count:
            self.requests += 1
        began = time.monotonic()
        call = None
        try:
            try:
                call = self._stub.PostModelOutputs.future(
                    request, metadata=self._key.metadata(),
                    timeout=self._deadline.for_chunk(chunk))
                response = self._await(call)
            except grpc.RpcError as exc:
                details = redact.text(self._key.scrub(str(exc.details() or "")))
                raise rpc_error(exc.code(), what, details) from None
            frames = self._frames(what, response, images=_images_asked(request))
        except BackendError as exc:
            self._answered(ticket, began, exc, call)
            raise
        self._rate.answered(ticket, ok=True, throttled=False, stated=None,
                            seconds=time.monotonic() - began)
        return frames

    def _answered(self, ticket: Ticket | None, began: float, exc: BackendError,
                  call: Any) -> None:
        """What a failed request teaches the pacing: a throttle (and the limit it states)."""
        throttled = isinstance(exc, TransientBackendError) and exc.throttled
        if isinstance(exc, TransientBackendError):
            exc.pushback = _pushback(call)
        self._rate.answered(ticket, ok=False, throttled=throttled,
                            stated=stated_limit(str(exc)) if throttled else None,
                            seconds=time.monotonic() - began)

    def _await(self, call: grpc.Future) -> service_pb2.MultiOutputResponse:
        """The call's answer; cancelled if the run abandons its work in flight meanwhile."""
        while True:
            try:
                return call.result(timeout=_POLL_S)
            except grpc.FutureTimeoutError:
                if self._interrupt.is_set():
                    call.cancel()
                    raise Interrupted("request cancelled: the run is stopping") from None

    # -- answers -------------------------------------------------------------------------------
    def _frames(self, what: str, response: service_pb2.MultiOutputResponse,
                images: int = 0) -> tuple[Frame, ...]:
        """The frames of a successful answer; any failed status, top-level or per output, raises.
        For `images` image inputs, one frame per output, in order, its time the image's position
        (predict puts it on the clock)."""
        if not response.outputs:
            if response.status.code in SUCCESS_CODES:
                raise ImplausibleAnswerError(f"{what}: implausible answer: no outputs")
            raise self._status_error(what, response.status)
        for output in response.outputs:
            if output.status.code != SUCCESS:
                raise self._status_error(what, output.status)
        if response.status.code not in SUCCESS_CODES:
            raise self._status_error(what, response.status)
        if images:
            if len(response.outputs) != images:
                raise ImplausibleAnswerError(f"{what}: implausible answer: "
                                             f"{len(response.outputs)} outputs for {images} images")
            return tuple(Frame(i, _concepts(o.data.concepts))
                         for i, o in enumerate(response.outputs))
        return tuple(Frame(int(f.frame_info.time), _concepts(f.data.concepts))
                     for f in response.outputs[0].data.frames)

    def _status_error(self, what: str, status: status_pb2.Status) -> BackendError:
        code = int(status.code)
        name = f"{code_name(code)} ({code})"
        # An API's description may quote the URL it could not fetch, signature and all.
        text = redact.text(self._key.scrub(
            "; ".join(t for t in (status.description, status.details) if t)))
        message = f"{what}: {name}: {text or 'no description'}"
        return classify(code, message, self._model_id)


class _Request:
    """One chunk's request, made again with a fresh URL after the API could not fetch one."""

    def __init__(self, build: Callable[[str | None], service_pb2.PostModelOutputsRequest],
                 media: Media, what: str) -> None:
        self._build = build
        self._url = media if isinstance(media, VideoUrl) else None
        self._what = what
        self._stale = False
        self._request = build(self._url.url if self._url else None)

    def get(self) -> service_pb2.PostModelOutputsRequest:
        if self._stale and self._url is not None and self._url.refresh is not None:
            self._request = self._build(self._url.refresh())
        self._stale = False
        return self._request

    def fetch_failed(self, exc: FetchFailedError) -> BackendError:
        """What a failed download means: with a URL, retry with a fresh one; bytes were never
        to be downloaded, so the answer is the API's verdict on the input."""
        if self._url is None:
            return RejectedInputError(f"the API rejected the video: {exc}", code=exc.code)
        self._stale = True
        if self._url.refresh is not None:
            log.warning("%s: the API could not fetch its URL; it gets a fresh one", self._what)
        return exc


def _pushback(call: Any) -> float | None:
    """Seconds the server asked to wait before a retry (gRPC's retry pushback), if it did."""
    try:
        metadata: Sequence[tuple[str, Any]] = call.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 (a call that never got an answer has none to read)
        return None
    for name, value in metadata:
        if name == _PUSHBACK:
            try:
                return max(0.0, int(value) / 1000)
            except (TypeError, ValueError):
                return None
    return None


def _images_asked(request: service_pb2.PostModelOutputsRequest) -> int:
    """How many image inputs the request carries (0: a video)."""
    return sum(1 for i in request.inputs if i.data.HasField("image"))


def _concepts(concepts: Iterable[resources_pb2.Concept]) -> tuple[Concept, ...]:
    found = [Concept(c.id, c.name, round(float(c.value), 6)) for c in concepts]
    return tuple(sorted(found, key=lambda c: -c.value))
