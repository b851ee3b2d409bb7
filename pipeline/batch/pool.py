"""The pool chunks are predicted in: threads, held to the chunks in flight the backend's rate
needs when it says so (a learned rate: `backends.ratecontrol.little`). A task waits for its
turn before it opens its chunk's media, so a waiting task holds a thread, not the bytes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from pipeline.backends import Backend
from pipeline.backends.ratecontrol import InFlightGate

P = ParamSpec("P")
T = TypeVar("T")


def predict_pool(workers: int, backend: Backend) -> ThreadPoolExecutor:
    """`workers` threads; behind the backend's gate, if it has one."""
    gate: InFlightGate | None = getattr(backend, "gate", None)
    if gate is None:
        return ThreadPoolExecutor(workers, thread_name_prefix="predict")
    return GatedPool(workers, gate)


class GatedPool(ThreadPoolExecutor):
    """A thread pool whose tasks run only while the gate lets them in."""

    def __init__(self, workers: int, gate: InFlightGate) -> None:
        super().__init__(workers, thread_name_prefix="predict")
        self.gate = gate

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        gate = self.gate

        def inside() -> T:
            gate.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                gate.leave()

        return super().submit(inside)
