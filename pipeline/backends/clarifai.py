"""The `clarifai` backend: PostModelOutputs through clarifai-grpc, retried and rate limited.

One backend object serves every chunk of every video of a run, from several threads: the gRPC
channel is thread-safe, the rate limiter is shared, and the first request goes alone so that a
wrong key costs one request, not one per chunk in flight."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from clarifai_grpc.channel.clarifai_channel import ClarifaiChannel
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from pipeline import models
from pipeline.errors import (
    AuthError,
    BackendError,
    ConfigError,
    OverLimitError,
    RejectedInputError,
    TransientBackendError,
)
from pipeline.ratelimit import RateLimiter
from pipeline.retry import RetryConfig, policy
from pipeline.settings import Settings
from pipeline.types import Chunk, ChunkResult, Concept, Frame, ModelInfo

_S = status_code_pb2
# DESIGN.md's lists: retry these; 98xxx (internal) is retried too.
TRANSIENT_CODES = frozenset({
    _S.TRY_AGAIN, _S.CONN_THROTTLED, _S.MODEL_DEPLOYING, _S.MODEL_QUEUED_FOR_DEPLOYMENT,
    _S.MODEL_BUSY_PLEASE_RETRY, _S.MODEL_LOADING, _S.RPC_REQUEST_QUEUE_FULL,
    _S.RPC_SERVER_UNAVAILABLE, _S.RPC_REQUEST_TIMEOUT, _S.INTERNAL_UNCATEGORIZED})
OVER_LIMIT_CODES = frozenset({_S.INPUT_VIDEO_OVER_LIMIT, _S.RPC_MAX_MESSAGE_SIZE_EXCEEDED})
MODEL_ACCESS_CODES = frozenset({_S.MODEL_DOES_NOT_EXIST, _S.MODEL_PERMISSION_DENIED})
_TRANSIENT_GRPC = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.ABORTED})
_AUTH_GRPC = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_TIMEOUT = "DEADLINE_EXCEEDED"


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


def key_from_env() -> str:
    """CLARIFAI_PAT, the only place a key comes from (never a flag: flags end up in `ps`)."""
    key = os.environ.get("CLARIFAI_PAT", "").strip()
    if not key:
        raise ConfigError("no Clarifai key: set the CLARIFAI_PAT environment variable to a "
                          "personal access token (Clarifai: Settings > Secrets), e.g. "
                          "`export CLARIFAI_PAT=...`")
    return key


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
                 deadline: Deadline | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self._key = _Key(key)
        self._model_id = models.clarifai_model_id(model)
        local = models.embedded(model)
        self.model = ModelInfo(self._model_id, local.name if local else self._model_id)
        self._user_app = resources_pb2.UserAppIDSet(user_id=user_id, app_id=app_id)
        self._channel = open_channel(api_base, insecure)
        self._stub = service_pb2_grpc.V2Stub(self._channel)
        self._limiter = RateLimiter(rate_limit, sleep=sleep)
        self._retrying = policy(retry, sleep=sleep, rng=rng)
        self._deadline = deadline or Deadline()
        self._key_ok = threading.Event()
        self._first = threading.Lock()
        self._refused: AuthError | None = None
        self.requests = 0  # every request sent, for tests and reports
        self._count = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClarifaiBackend:
        return cls(settings.model, key=key_from_env(), api_base=settings.api_base,
                   insecure=settings.insecure,
                   user_id=os.environ.get("CLARIFAI_USER_ID") or "clarifai",
                   app_id=os.environ.get("CLARIFAI_APP_ID") or "main",
                   rate_limit=settings.rate_limit)

    def __repr__(self) -> str:
        return (f"ClarifaiBackend(model={self._model_id!r}, "
                f"user_app={self._user_app.user_id}/{self._user_app.app_id}, key={self._key!r})")

    def close(self) -> None:
        self._channel.close()

    # -- one chunk -----------------------------------------------------------------------------
    def predict(self, chunk: Chunk, sample_ms: int) -> ChunkResult:
        request = self._request(Path(chunk.path).read_bytes(), sample_ms)
        tries: list[str | int | None] = []  # the error code of each failed attempt

        def attempt() -> tuple[Frame, ...]:
            try:
                return self._attempt(chunk, request)
            except BackendError as exc:
                tries.append(exc.code)
                raise

        try:
            frames = self._retrying.copy()(attempt)
        except BackendError as exc:
            final = _counted(_kept_timing_out(exc, chunk, tries), len(tries))
            if final is exc:
                raise
            raise final from exc
        return ChunkResult(chunk.index, frames, len(tries) + 1)

    def _request(self, data: bytes, sample_ms: int) -> service_pb2.PostModelOutputsRequest:
        config = resources_pb2.OutputInfo(
            output_config=resources_pb2.OutputConfig(sample_ms=sample_ms))
        return service_pb2.PostModelOutputsRequest(
            user_app_id=self._user_app, model_id=self._model_id,
            model=resources_pb2.Model(model_version=resources_pb2.ModelVersion(
                output_info=config)),
            inputs=[resources_pb2.Input(data=resources_pb2.Data(
                video=resources_pb2.Video(base64=data)))])

    def _attempt(self, chunk: Chunk, request: service_pb2.PostModelOutputsRequest,
                 ) -> tuple[Frame, ...]:
        """One request. Until one answer has shown the key works, requests go one at a time."""
        self._stop_if_refused()
        if not self._key_ok.is_set():
            with self._first:
                self._stop_if_refused()
                if not self._key_ok.is_set():
                    return self._first_exchange(chunk, request)
        return self._exchange(chunk, request)

    def _first_exchange(self, chunk: Chunk, request: service_pb2.PostModelOutputsRequest,
                        ) -> tuple[Frame, ...]:
        try:
            frames = self._exchange(chunk, request)
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
        if self._refused is not None:
            raise AuthError(str(self._refused), code=self._refused.code)

    def _exchange(self, chunk: Chunk, request: service_pb2.PostModelOutputsRequest,
                  ) -> tuple[Frame, ...]:
        self._limiter.acquire()
        with self._count:
            self.requests += 1
        try:
            response = self._stub.PostModelOutputs(
                request, metadata=self._key.metadata(), timeout=self._deadline.for_chunk(chunk))
        except grpc.RpcError as exc:
            raise self._rpc_error(chunk, exc) from None
        return self._frames(chunk, response)

    # -- answers -------------------------------------------------------------------------------
    def _frames(self, chunk: Chunk, response: service_pb2.MultiOutputResponse,
                ) -> tuple[Frame, ...]:
        """The frames of a successful answer; any failed status, top-level or per output, raises."""
        if not response.outputs:
            if response.status.code == _S.SUCCESS:
                raise BackendError(f"chunk {chunk.index}: the API answered with no outputs")
            raise self._status_error(chunk, response.status)
        output = response.outputs[0]
        if output.status.code != _S.SUCCESS:
            raise self._status_error(chunk, output.status)
        if response.status.code not in (_S.SUCCESS, _S.MIXED_STATUS):
            raise self._status_error(chunk, response.status)
        return tuple(Frame(int(f.frame_info.time), _concepts(f.data.concepts))
                     for f in output.data.frames)

    def _status_error(self, chunk: Chunk, status: status_pb2.Status) -> BackendError:
        code = int(status.code)
        what = f"{_code_name(code)} ({code})"
        text = self._key.scrub("; ".join(t for t in (status.description, status.details) if t))
        message = f"chunk {chunk.index}: {what}: {text or 'no description'}"
        return classify(code, message, self._model_id)

    def _rpc_error(self, chunk: Chunk, exc: grpc.RpcError) -> BackendError:
        code: grpc.StatusCode = exc.code()
        details = self._key.scrub(str(exc.details() or ""))
        message = f"chunk {chunk.index}: gRPC {code.name}: {details or 'no details'}"
        if code in _AUTH_GRPC:
            return AuthError(f"the API refused the credentials ({message}); check CLARIFAI_PAT",
                             code=code.name)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            if "larger than max" in details.lower():
                return OverLimitError(message, code=code.name)
            return TransientBackendError(message, code=code.name, throttled=True)
        if code in _TRANSIENT_GRPC:
            return TransientBackendError(message, code=code.name)
        return BackendError(message, code=code.name)


def classify(code: int, message: str, model_id: str) -> BackendError:
    """The error a Clarifai status code means for this chunk (DESIGN.md's code lists)."""
    if code in TRANSIENT_CODES or 98000 <= code < 99000:
        return TransientBackendError(message, code=code, throttled=code == _S.CONN_THROTTLED)
    if code in OVER_LIMIT_CODES:
        return OverLimitError(message, code=code)
    if 11000 <= code < 12000:
        return AuthError(f"the API refused the key or account: {message}; check CLARIFAI_PAT "
                         "(and CLARIFAI_USER_ID / CLARIFAI_APP_ID)", code=code)
    if code in MODEL_ACCESS_CODES:
        return AuthError(f"model {model_id!r} cannot be used: {message}; check --model "
                         "(and CLARIFAI_USER_ID / CLARIFAI_APP_ID)", code=code)
    if 30000 <= code < 32000 or code == _S.PREDICT_INVALID_REQUEST:
        return RejectedInputError(f"the API rejected the video: {message}", code=code)
    return BackendError(message, code=code)


def _kept_timing_out(exc: BackendError, chunk: Chunk, tries: list[str | int | None],
                     ) -> BackendError:
    """A chunk whose every attempt ran out of time is too much for one call: re-split it."""
    if isinstance(exc, TransientBackendError) and len(tries) > 1 and set(tries) == {_TIMEOUT}:
        return OverLimitError(f"chunk {chunk.index}: timed out on all {len(tries)} attempts",
                              code=_TIMEOUT)
    return exc


def _counted(exc: BackendError, attempts: int) -> BackendError:
    exc.attempts = attempts  # type: ignore[attr-defined]  # the runner reads it with getattr
    return exc


def _concepts(concepts: Iterable[resources_pb2.Concept]) -> tuple[Concept, ...]:
    found = [Concept(c.id, c.name, round(float(c.value), 6)) for c in concepts]
    return tuple(sorted(found, key=lambda c: -c.value))


def _code_name(code: int) -> str:
    try:
        return str(_S.StatusCode.Name(code))
    except ValueError:
        return "UNKNOWN_CODE"
