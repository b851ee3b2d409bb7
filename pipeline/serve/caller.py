"""The client of a request, as `serve`'s work sees it: still there, or gone.

gRPC answers a client whose deadline passed (or who cancelled) by itself; the work for that
client goes on unless it asks. Downloads, decodes and scoring ask between steps."""

from __future__ import annotations

import threading
from typing import Protocol

import grpc

from pipeline.errors import ClientGoneError


class Caller(Protocol):
    """What a gRPC servicer context offers (`serve` adds its own stopping to it)."""

    def is_active(self) -> bool: ...

    def time_remaining(self) -> float | None: ...


def stop_if_gone(caller: Caller) -> None:
    """Raise ClientGoneError if nobody is waiting for this work any more."""
    if not caller.is_active():
        raise ClientGoneError("the client is gone")


class RequestCaller:
    """One request's client: gone once it cancels or its deadline passes, and for every request
    once the server abandons those still in flight (stopping, after their grace)."""

    def __init__(self, context: grpc.ServicerContext, abandon: threading.Event) -> None:
        self._context = context
        self._abandon = abandon

    def is_active(self) -> bool:
        left = self.time_remaining()
        return (not self._abandon.is_set() and self._context.is_active()
                and (left is None or left > 0))

    def time_remaining(self) -> float | None:
        left = self._context.time_remaining()
        return None if left is None else float(left)

    def outcome(self) -> str:
        """How the request ended, for the request log: the client's own deadline, its
        cancelling, or the server's stopping (answered UNAVAILABLE: clients retry it)."""
        left = self.time_remaining()
        if left is not None and left <= 0:
            return "grpc:DEADLINE_EXCEEDED"
        return "grpc:UNAVAILABLE" if self._context.is_active() else "grpc:CANCELLED"


class InFlight:
    """Requests being answered, counted so that stopping can wait for them to end."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False if some still are after `timeout` s."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)
