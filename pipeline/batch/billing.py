"""What a run bills, and its cap (`--max-billed-frames`).

Clarifai bills every frame it scores: a video request, each frame it samples (one an interval
of the chunk); an image batch, each image. A request's frames are known before it is sent
(`predict.billed_frames`), so the budget is charged first: a request that would take the run
past the budget is not sent, and from then on nothing is (the budget is closed), so what a
stopped run billed is at most its budget. Chunks already answered are saved, so a rerun bills
only what was left.

What is counted is every request sent, asked again included; Clarifai does not bill a request
it refused, so a run whose requests failed bills less than it counted, never more. Retries
inside a backend (a transient error, answered by no frames) are not counted again."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from pipeline.errors import BudgetReached


class Charges(Protocol):
    """A run's budget, in this process or shared by a cluster's workers."""

    @property
    def closed(self) -> bool:
        """Whether a request was refused: nothing more is sent."""
        ...

    def charge(self, frames: int) -> None:
        """Count a request of `frames` billed frames before it is sent; BudgetReached (and
        closed from then on) if it would take the run past the budget."""
        ...


def reached(limit: int, spent: int) -> BudgetReached:
    return BudgetReached(f"billing budget reached ({spent:,} frames billed of "
                         f"--max-billed-frames {limit:,}); rerun with a larger budget to finish")


class Budget:
    """The budget of a run in one process (threads share it); `limit` None: no cap, only
    counted."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.spent = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def charge(self, frames: int) -> None:
        with self._lock:
            if self.limit is not None and (self._closed or self.spent + frames > self.limit):
                self._closed = True
                raise reached(self.limit, self.spent)
            self.spent += frames


class SharedBudget:
    """The budget of a run on a Dask cluster: one count in the scheduler (a distributed
    Variable) changed under a distributed Lock, so no two workers spend the same frames."""

    WAIT_S = 30.0  # the most a worker waits on the scheduler for the count

    def __init__(self, name: str, limit: int, client: Any = None) -> None:
        import distributed  # only on a cluster
        dist: Any = distributed  # untyped
        self.limit = limit
        self._lock: Any = dist.Lock(f"{name}-lock")
        self._spent: Any = dist.Variable(f"{name}-spent", client=client)
        self._closed: Any = dist.Variable(f"{name}-closed", client=client)

    def start(self) -> None:
        """Set the count to zero (the client, before any task runs)."""
        self._spent.set(0)
        self._closed.set(False)

    @property
    def closed(self) -> bool:
        return bool(self._closed.get(timeout=self.WAIT_S))

    @property
    def spent(self) -> int:
        return int(self._spent.get(timeout=self.WAIT_S))

    def charge(self, frames: int) -> None:
        """As Budget.charge; a scheduler that does not answer within WAIT_S fails the request
        unsent (TimeoutError), never waits for ever."""
        if not self._lock.acquire(timeout=self.WAIT_S):
            raise TimeoutError(f"the run's billing budget on the Dask scheduler did not answer "
                               f"within {self.WAIT_S:.0f} s")
        try:
            spent = int(self._spent.get(timeout=self.WAIT_S))
            if bool(self._closed.get(timeout=self.WAIT_S)) or spent + frames > self.limit:
                self._closed.set(True)
                raise reached(self.limit, spent)
            self._spent.set(spent + frames)
        finally:
            self._lock.release()


class Tally:
    """One video's billed frames in this run (its chunks' threads add to it)."""

    def __init__(self) -> None:
        self.frames = 0
        self._lock = threading.Lock()

    def add(self, frames: int) -> None:
        with self._lock:
            self.frames += frames
