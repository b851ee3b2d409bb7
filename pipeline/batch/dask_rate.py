"""One learned rate for a whole Dask cluster (`--rate-limit auto` with `--dask`).

The budget lives on the scheduler: a scheduler plugin (`RatePlugin`, one per run) holds the
controller and the pacer of `backends.adaptive`, and adds a handler to the scheduler. Each
request on any worker takes its turn from it and reports its answer through the worker's own
connection to the scheduler (`ClusterRate`), so the cluster adapts as one client would, and a
worker that joins or leaves mid-run changes nothing for the account: the state was never on a
worker. In each worker process one thread at a time asks for a turn (the others wait for it
there), so the scheduler hears from each process at most once per turn.

The client registers the plugin with the rates remembered on its machine (filed under salted
digests, `backends.rate_memory`); a worker, which has the key, sends the digest of its key
made with the same salt, so the plugin starts where the last run with that key settled, and
the client remembers what the cluster learned, all without the key leaving the workers."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from pipeline.backends.adaptive import Pacer, Ticket
from pipeline.backends.rate_memory import RateMemory, Remembered, digest
from pipeline.backends.ratecontrol import (
    FIRST_LATENCY,
    InFlightGate,
    RateReport,
    Sleep,
    controller_for,
    little,
)
from pipeline.batch.pacing import ClusterPlan
from pipeline.errors import ConfigError, Interrupted, TransientBackendError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

HANDLER = "video_pipeline_rate"
_ACTIONS = frozenset({"take", "answered", "report"})
_RPC_TIMEOUT_S = 60
_TURN_POLL_S = 0.2  # how often a thread waiting for its process's turn looks for a stop
_SMOOTHING = 0.2


class RatePlugin(SchedulerPlugin):
    """The run's one controller, on the scheduler (its event loop: no locks needed)."""

    def __init__(self, name: str, most: float | None, remembered: dict[str, Remembered],
                 in_flight: int | None) -> None:
        self.name = name
        self._most = most
        self._remembered = remembered
        self._in_flight = in_flight
        self._pacer: Pacer | None = None
        self._latency = FIRST_LATENCY
        self._digest: str | None = None
        self._began = 0.0

    async def start(self, scheduler: Any) -> None:
        def video_pipeline_rate(name: str, action: str, **args: Any) -> Any:
            """An action of the run's plugin (`gone` once the run has removed it)."""
            plugin = scheduler.plugins.get(name)
            if plugin is None or action not in _ACTIONS:
                return {"gone": True}
            return getattr(plugin, action)(**args)

        scheduler.handlers[HANDLER] = video_pipeline_rate

    def take(self, digest: str) -> dict[str, Any]:
        """A turn now (a ticket) or the seconds to wait; and the chunks in flight the rate
        needs. The first turn starts the controller where the key's memory says."""
        if self._pacer is None:
            self._digest = digest
            self._pacer = Pacer(controller_for(self._remembered.get(digest), self._most))
            self._began = self._pacer.controller.rate
        got = self._pacer.take(time.monotonic())
        rate = self._pacer.controller.rate
        in_flight = None if self._in_flight is None else little(rate, self._latency,
                                                                self._in_flight)
        if isinstance(got, Ticket):
            return {"ticket": asdict(got), "in_flight": in_flight}
        return {"wait": got, "in_flight": in_flight}

    def answered(self, ticket: dict[str, Any], ok: bool, throttled: bool,
                 stated: float | None, seconds: float) -> None:
        if self._pacer is None:
            return
        controller = self._pacer.controller
        if throttled:
            before = controller.rate
            if controller.throttled(Ticket(**ticket), time.monotonic(), stated):
                log.info("rate: throttled at %.2f requests/s; now %.2f", before, controller.rate)
        elif ok:
            self._latency += _SMOOTHING * (seconds - self._latency)
            controller.succeeded(Ticket(**ticket))

    def report(self) -> dict[str, Any]:
        if self._pacer is None:
            return {}
        c = self._pacer.controller
        return {"digest": self._digest, "start": round(self._began, 3), "learned": c.learned(),
                "stated": c.stated, "throttled": c.throttles, "requests": self._pacer.starts}


# -- the client's side -------------------------------------------------------------------------
def open_budget(client: Any, settings: Settings) -> tuple[ClusterPlan, RateMemory | None]:
    """Register the run's plugin on the scheduler; the plan the tasks carry, and the memory
    whose salt the workers' digests are made with."""
    api = settings.api
    memory = RateMemory(api.cache_dir) if api.cache_dir else None
    salt = memory.salt if memory is not None else RateMemory.fresh_salt()
    known = memory.everything() if memory is not None else {}
    in_flight = api.workers if api.concurrency is None else None
    plan = ClusterPlan(f"video-pipeline-rate-{uuid.uuid4().hex}", salt, in_flight)
    try:
        client.register_plugin(RatePlugin(plan.name, api.rate_limit_max, known, in_flight),
                               name=plan.name)
    except Exception as exc:  # noqa: BLE001 (whatever the scheduler raises refusing a plugin)
        raise ConfigError(f"--rate-limit auto on Dask needs video-pipeline on the scheduler "
                          f"too ({type(exc).__name__}: {exc}); install it there, or give "
                          f"--rate-limit R") from None
    return plan, memory


def close_budget(client: Any, plan: ClusterPlan, memory: RateMemory | None,
                 ) -> RateReport | None:
    """What the cluster learned (remembered on this machine, under the workers' digest);
    the plugin is removed from the scheduler."""
    try:
        found = client.sync(client.scheduler.video_pipeline_rate, name=plan.name,
                            action="report", callback_timeout=_RPC_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 (the scheduler has gone: nothing learned to keep)
        log.warning("cannot read the rate the cluster learned: %s", exc)
        found = None
    try:
        client.sync(client.scheduler.unregister_scheduler_plugin, name=plan.name,
                    callback_timeout=_RPC_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 (a scheduler that is gone keeps no plugin)
        log.debug("cannot remove the rate plugin from the scheduler: %s", exc)
    if found is None:
        return None
    if not found or "gone" in found:
        return None
    report = RateReport("auto", found["requests"], found["throttled"], start=found["start"],
                        learned=found["learned"], stated=found["stated"])
    if memory is not None and found.get("digest"):
        memory.remember(found["digest"], Remembered(found["learned"], found["stated"]))
    log.info("%s", report.describe())
    return report


# -- a worker's side ---------------------------------------------------------------------------
class ClusterRate:
    """A worker process's pacing: turns from the run's plugin, answers reported to it."""

    def __init__(self, plan: ClusterPlan, sleep: Sleep, *, api_base: str | None,
                 key: str) -> None:
        from distributed import get_worker
        self._worker = get_worker()
        self._plan = plan
        self._digest = digest(plan.salt, api_base, key)
        self._sleep = sleep
        self._turn = threading.Lock()
        self.gate = None if plan.in_flight is None else InFlightGate(
            little(1.0, FIRST_LATENCY, plan.in_flight))

    def _call(self, action: str, **args: Any) -> Any:
        from distributed.utils import sync
        try:
            answer = sync(self._worker.loop, self._worker.scheduler.video_pipeline_rate,
                          name=self._plan.name, action=action,
                          callback_timeout=_RPC_TIMEOUT_S, **args)
        except Exception as exc:  # noqa: BLE001 (retried as any transient failure of a request)
            raise TransientBackendError(f"the run's rate budget on the Dask scheduler did "
                                        f"not answer ({type(exc).__name__}: {exc})") from None
        if isinstance(answer, dict) and answer.get("gone"):
            raise Interrupted("the run's rate budget is gone from the scheduler (its client "
                              "has stopped)")
        return answer

    def start(self) -> Ticket:
        while not self._turn.acquire(timeout=_TURN_POLL_S):
            self._sleep(0)  # ends the wait if the run is abandoning its work
        try:
            while True:
                got = self._call("take", digest=self._digest)
                if self.gate is not None and got["in_flight"] is not None:
                    self.gate.resize(got["in_flight"])
                if "ticket" in got:
                    return Ticket(**got["ticket"])
                self._sleep(got["wait"])
        finally:
            self._turn.release()

    def answered(self, ticket: Ticket | None, *, ok: bool, throttled: bool,
                 stated: float | None, seconds: float) -> None:
        assert ticket is not None
        try:
            self._call("answered", ticket=asdict(ticket), ok=ok, throttled=throttled,
                       stated=stated, seconds=seconds)
        except (TransientBackendError, Interrupted) as exc:  # the answer stands; a lesson lost
            log.warning("%s", exc)

    def report(self) -> RateReport:
        found = self._call("report")
        return RateReport("auto", found.get("requests", 0), found.get("throttled", 0),
                          start=found.get("start"), learned=found.get("learned"),
                          stated=found.get("stated"))

    def close(self) -> None:
        pass  # the client remembers what the cluster learned
