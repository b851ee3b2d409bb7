"""The faults `serve` injects for testing clients: transient failures drawn from the retryable
codes, in a seeded order, or at named requests."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import grpc
from clarifai_grpc.grpc.api import resources_pb2, service_pb2
from clarifai_grpc.grpc.api.status import status_code_pb2 as codes

from pipeline.serve.catalog import status


@dataclass(frozen=True)
class Fault:
    """One injected transient failure: a gRPC status, or a Clarifai status (top or per output)."""

    code: int | grpc.StatusCode
    per_output: bool = False  # top-level SUCCESS but the output failed

    @property
    def label(self) -> str:
        if isinstance(self.code, grpc.StatusCode):
            return f"grpc:{self.code.name}"
        return f"{'output' if self.per_output else 'status'}:{self.code}"

    @classmethod
    def parse(cls, text: str) -> Fault:
        """`UNAVAILABLE` (a gRPC status), `11005` (a Clarifai status), `output:21354`."""
        where, _, code = text.strip().rpartition(":")
        if code.isdigit():
            return cls(int(code), per_output=where == "output")
        return cls(grpc.StatusCode[code.upper()])


# The codes a client must retry (docs/clarifai-api.md), each a fault it must survive.
FAULTS: tuple[Fault, ...] = (
    Fault(grpc.StatusCode.UNAVAILABLE), Fault(codes.TRY_AGAIN), Fault(codes.CONN_THROTTLED),
    Fault(codes.MODEL_DEPLOYING), Fault(codes.MODEL_QUEUED_FOR_DEPLOYMENT),
    Fault(codes.MODEL_BUSY_PLEASE_RETRY), Fault(codes.MODEL_LOADING),
    Fault(codes.RPC_REQUEST_QUEUE_FULL), Fault(codes.RPC_SERVER_UNAVAILABLE),
    Fault(codes.RPC_REQUEST_TIMEOUT), Fault(codes.INTERNAL_SERVER_ISSUE),
    Fault(codes.MODEL_BUSY_PLEASE_RETRY, per_output=True),
)


class Faults:
    """Draws faults from one seeded generator, in request order: the same seed, the same run;
    requests named by their arrival number fail with the first fault of the list."""

    def __init__(self, rate: float, seed: int, faults: tuple[Fault, ...],
                 at: frozenset[int] = frozenset()) -> None:
        self.rate = rate
        self.faults = faults
        self.at = at
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._arrived = 0

    def draw(self) -> Fault | None:
        with self._lock:
            self._arrived += 1
            if self._arrived in self.at:
                return self.faults[0]
            if self.rate <= 0:
                return None
            hit = self._rng.random() < self.rate
            return self._rng.choice(self.faults) if hit else None


def fault_response(fault: Fault) -> service_pb2.MultiOutputResponse:
    assert isinstance(fault.code, int)
    injected = status(fault.code, f"injected fault: {codes.StatusCode.Name(fault.code)}")
    if not fault.per_output:
        return service_pb2.MultiOutputResponse(status=injected)
    return service_pb2.MultiOutputResponse(
        status=status(codes.SUCCESS, "Ok"), outputs=[resources_pb2.Output(status=injected)])
