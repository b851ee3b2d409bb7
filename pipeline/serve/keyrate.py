"""`serve --key-rate-limit R`: Clarifai's per-key limit, so that clients can be tested for real.

At most R requests per key (the `authorization` metadata) are accepted in any 1-second window;
beyond that a request is answered CONN_THROTTLED (11005), "exceeded limit of R requests per
second", as Clarifai answers it, and logged. Only accepted requests count toward the window.

Requests are counted on arrival, before any queue: a gRPC server interceptor runs in the
server's own polling thread as each call arrives, before the call is handed to the pool of
handler threads (where it may wait for a free one). The pool then has room beyond `--workers`
(`SPARE` threads), so that throttles are answered at once, and the model's work is held to
`--workers` at a time by a semaphore (`Admitted`)."""

from __future__ import annotations

import collections
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from clarifai_grpc.grpc.api import service_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes

from pipeline.serve.catalog import status

SPARE = 64  # handler threads beyond --workers: answering throttles, waiting for a worker
# When the request being handled arrived (time.time()), for its log line: an accepted request
# may wait for one of the --workers before its handler runs.
_ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar("arrived", default=None)
_WINDOW = 1.0
_SWEEP_AT = 1024  # keys remembered before the quiet ones are dropped
# Logs a throttled request: (method's short name, request, arrival time.time()).
LogThrottle = Callable[[str, Any, float], None]


def arrival() -> float | None:
    """When the request this thread handles arrived, if --key-rate-limit counted it."""
    return _ARRIVED.get()


def throttle_description(limit: int) -> str:
    return f"exceeded limit of {limit} requests per second"


class KeyWindows:
    """Accepted arrivals per key in the last second; a key's arrival is accepted while fewer
    than `limit` were accepted in the second before it."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._accepted: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self._lock = threading.Lock()

    def admit(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            window = self._accepted[key]
            while window and window[0] <= now - _WINDOW:
                window.popleft()
            if len(window) >= self.limit:
                return False
            window.append(now)
            if len(self._accepted) > _SWEEP_AT:  # many keys seen: forget those gone quiet
                for quiet in [k for k, w in self._accepted.items()
                              if not w or w[-1] <= now - _WINDOW]:
                    del self._accepted[quiet]
            return True


class KeyRateLimit(grpc.ServerInterceptor):  # type: ignore[misc, unused-ignore]
    """The interceptor: counts each call as it arrives; a call over the limit is answered
    CONN_THROTTLED without reaching the servicer; an accepted one waits for one of the
    `workers` slots before its handler runs."""

    def __init__(self, limit: int, workers: int, log_throttle: LogThrottle,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.windows = KeyWindows(limit, clock)
        self._slots = threading.BoundedSemaphore(workers)
        self._log_throttle = log_throttle

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        arrived = time.time()
        metadata = dict(details.invocation_metadata or ())
        admitted = self.windows.admit(str(metadata.get("authorization", "")))
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary
        method = str(details.method).rsplit("/", 1)[-1]
        if admitted:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                token = _ARRIVED.set(arrived)
                try:
                    with self._slots:
                        return behaviour(request, context)
                finally:
                    _ARRIVED.reset(token)
        else:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                self._log_throttle(method, request, arrived)
                return _throttled(self.windows.limit)
        return grpc.unary_unary_rpc_method_handler(
            run, request_deserializer=handler.request_deserializer,
            response_serializer=_any_response)


def _throttled(limit: int) -> service_pb2.MultiOutputResponse:
    return service_pb2.MultiOutputResponse(
        status=status(codes.CONN_THROTTLED, throttle_description(limit)))


def _any_response(response: Any) -> bytes:
    """Every V2 answer carries its status as field 1, so a throttle's answer, made as a
    MultiOutputResponse holding only its status, reads as any of them."""
    return bytes(response.SerializeToString())
