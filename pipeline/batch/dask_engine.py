"""The distributed engine: each video is one task on a Dask cluster.

`--dask tcp://host:8786` uses a running cluster (`dask scheduler` + `dask worker`); `--dask local`
or `local:N` starts a LocalCluster of N worker processes for the run. The client expands the
inputs (so it must see the folders and manifests), and each task runs the same code as a local run
(`Runner.process`) on one video, writing into --out. So:

- --out must be storage every worker sees at the same path (NFS, a cluster file system, or one
  machine): the client writes a marker file there and every worker must read it back, or the run
  stops before sending anything (exit 2). Per-video locks (`locks.py`) work across machines too.
- Sources must be readable by the workers at the path the client sees (relative paths are made
  absolute; timeline.json still shows the path as given) or be URLs.
- Credentials are not shipped with the tasks: each worker reads CLARIFAI_PAT (and
  CLARIFAI_USER_ID / CLARIFAI_APP_ID) from its own environment, as a local run does.
- `--rate-limit auto` (the clarifai backend's default): one learned rate for the whole cluster,
  held by a plugin on the scheduler that every worker's requests take their turns from
  (`dask_rate`); workers joining or leaving mid-run change nothing for the account.
- A fixed `--rate-limit R` holds across the cluster by splitting it into whole shares, one a
  worker process, that sum to at most R (`rate_shares`): 10 over 3 workers is 4 + 3 + 3;
  a cluster with more workers than whole requests per second sends from only as many workers as
  it has whole requests (the clarifai backend; the local one uses every worker). Each share is
  enforced by one limiter shared by every task in that process (the backend is built once per
  process), and a limiter allows at most its share of starts in any second, so the cluster
  never exceeds the limit in any second. `--concurrency` is per task.
- A stop (SIGTERM/Ctrl-C on the client) sets a distributed Event that every task checks before
  each chunk: chunks in flight finish and are saved, nothing new is sent, the client exits 130.
- --max-billed-frames holds across the cluster: one count in the scheduler (a distributed
  Variable, changed under a distributed Lock: `billing.SharedBudget`) that every task charges
  before each request, so no two workers spend the same frames; once a request is refused,
  no task sends another.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.backends import Backend
from pipeline.backends.factory import make_backend
from pipeline.backends.ratecontrol import RateReport
from pipeline.batch import inputs
from pipeline.batch.billing import Charges, SharedBudget
from pipeline.batch.pacing import ClusterPlan, Pacing
from pipeline.batch.runner import Runner, preflight, skipped_if_done
from pipeline.batch.stopping import StopCheck, StopFlag
from pipeline.batch.summary import Outcome, failed, write_summary
from pipeline.errors import ConfigError, Interrupted
from pipeline.output.files import atomic_write_text, prepare_out
from pipeline.settings import Settings

log = logging.getLogger(__name__)

_POLL_S = 0.5
_CONNECT_TIMEOUT_S = 10
# A worker process's backends, the latest few (a long-lived cluster serves many runs; a
# backend let go closes its channel once no task holds it).
_BACKENDS: collections.OrderedDict[tuple[Any, ...], Backend] = collections.OrderedDict()
_BACKENDS_KEPT = 8
_BACKENDS_LOCK = threading.Lock()


def run(settings: Settings, out: str, sources: list[str], *,
        stop: StopFlag | None = None) -> list[Outcome]:
    """Every input as a task on the cluster `settings.batch.dask` names; summary.json as a
    local run."""
    distributed = _import_distributed()
    stop = stop or StopFlag()
    outdir = prepare_out(out).resolve()
    expanded = [_for_workers(s) for s in inputs.expand(sources, exclude=str(outdir))]
    # Done videos are skipped here, before any cluster is reached: a nightly rerun over a folder
    # that holds nothing new costs what a local rerun costs. No backend is made here: the
    # client needs neither the model nor the key (each worker reads its own).
    preflight(settings, expanded)  # the bucket is checked here; the workers stage their chunks
    known = {i: o for i, s in enumerate(expanded)
             if (o := skipped_if_done(settings, outdir, s))}
    todo = [s for i, s in enumerate(expanded) if i not in known]
    stop.before_forced_exit(lambda: write_summary(Path(out), [
        known.get(i) or failed(s.display, "interrupted; rerun to resume")
        for i, s in enumerate(expanded)]))
    done, rate = _on_cluster(distributed, settings, outdir, todo, stop) if todo else ([], None)
    ran = iter(done)
    outcomes = [known[i] if i in known else next(ran) for i in range(len(expanded))]
    write_summary(Path(out), outcomes, rate=rate.as_dict() if rate else None)
    for o in outcomes:
        if o.status == "failed":
            log.error("%s", o.error)
    if stop.is_set():
        raise Interrupted("stopped before every input was done")
    return outcomes


def _on_cluster(distributed: Any, settings: Settings, outdir: Path,
                sources: list[inputs.Source], stop: StopFlag,
                ) -> tuple[list[Outcome], RateReport | None]:
    client, cluster = _connect(distributed, settings.batch.dask or "local")
    try:
        check_shared(client, outdir)
        task_settings = dataclasses.replace(
            settings, batch=dataclasses.replace(settings.batch, progress=False, dask=None),
            api=dataclasses.replace(settings.api, api_key=None, cache_dir=None))
        if not settings.api.adaptive:
            shares = _fixed_shares(client, settings)
            return _run_tasks(distributed, client, task_settings, outdir, sources, stop,
                              shares), None
        from pipeline.batch import dask_rate
        plan, memory = dask_rate.open_budget(client, settings)
        log.info("dask: %d workers at %s; --rate-limit auto: one budget on the scheduler",
                 len(client.scheduler_info()["workers"]), client.scheduler.address)
        try:
            outcomes = _run_tasks(distributed, client, task_settings, outdir, sources, stop,
                                  plan)
        finally:
            report = dask_rate.close_budget(client, plan, memory)
        return outcomes, report
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _fixed_shares(client: Any, settings: Settings) -> dict[str, float]:
    workers = sorted(client.scheduler_info()["workers"])
    rate = settings.api.rate_limit
    rate = 10.0 if rate == "auto" else rate  # the local backend sends nothing: any will do
    shares = rate_shares(rate, workers) if settings.api.backend == "clarifai" \
        else {w: rate for w in workers}
    log.info("dask: %d workers at %s; --rate-limit %.3g shared as %s", len(workers),
             client.scheduler.address, rate,
             ", ".join(f"{share:g}" for share in shares.values()))
    return shares


def _import_distributed() -> Any:
    """The distributed module: an optional extra, imported only here. Any, as what comes of it
    (clients, clusters, futures, events) is: most of distributed's methods are unannotated."""
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError("--dask needs the optional extra: pip install "
                          "'video-pipeline[dask]' (or make install)") from exc
    return distributed


def _connect(distributed: Any, address: str) -> tuple[Any, Any]:
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address == "local" or address.startswith("local:"):
        n = _local_workers(address)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(address, timeout=_CONNECT_TIMEOUT_S), None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach the scheduler ({exc})") from exc


def _local_workers(address: str) -> int:
    text = address.partition(":")[2]
    if not text:
        return max(1, min(4, os.cpu_count() or 1))
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--dask local:N takes a worker count of 1 or more, not {text!r}")
    return int(text)


def check_shared(client: Any, out: Path) -> None:
    """Raise ConfigError unless every worker sees the marker file the client writes in --out."""
    token = uuid.uuid4().hex
    marker = out / f".dask-check-{token}"
    atomic_write_text(marker, token)
    try:
        seen = client.run(_sees_marker, str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ConfigError(f"--out {out} is not visible from Dask worker(s) {', '.join(blind)}: "
                          "--out must be storage every worker sees at the same path")


def _sees_marker(path: str, token: str) -> bool:
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def _for_workers(source: inputs.Source) -> inputs.Source:
    if source.error or source.is_url or os.path.isabs(source.path):
        return source
    return inputs.Source(os.path.abspath(source.path), label=source.display)


def rate_shares(rate: float, workers: list[str]) -> dict[str, float]:
    """Requests per second for each worker that sends: whole shares summing to at most `rate`
    (a limiter allows whole starts in any second: 2.5 is 2), as even as they go; below one
    request a second, one worker sends at that rate."""
    if not workers:
        return {}
    if rate < 1:
        return {workers[0]: rate}
    whole = math.floor(rate)
    senders = workers[:min(len(workers), whole)]
    each, extra = divmod(whole, len(senders))
    return {w: float(each + (1 if i < extra else 0)) for i, w in enumerate(senders)}


def _run_tasks(distributed: Any, client: Any, settings: Settings, out: Path,
               sources: list[inputs.Source], stop: StopFlag, budget: Pacing) -> list[Outcome]:
    event_name = f"video-pipeline-stop-{uuid.uuid4().hex}"
    event = distributed.Event(event_name, client=client)
    billing = None  # the run's --max-billed-frames, counted on the scheduler
    if settings.batch.max_billed_frames is not None:
        billing = f"video-pipeline-budget-{uuid.uuid4().hex}"
        SharedBudget(billing, settings.batch.max_billed_frames, client).start()
    # Fixed shares: only the workers holding one send; one learned budget: any worker.
    where: dict[str, Any] = {} if isinstance(budget, ClusterPlan) else {
        "workers": list(budget), "allow_other_workers": False}
    futures = [client.submit(process_on_worker, settings, str(out), s, event_name, budget,
                             billing, key=f"video-{i}-{uuid.uuid4().hex[:8]}", pure=False,
                             **where)
               for i, s in enumerate(sources)]
    pending = list(futures)
    while pending:
        with contextlib.suppress(TimeoutError):
            distributed.wait(pending, timeout=_POLL_S, return_when="FIRST_COMPLETED")
        pending = [f for f in pending if not f.done()]
        if stop.is_set() and not event.is_set():
            log.warning("stopping: tasks finish their chunks in flight and send nothing new")
            event.set()
        if stop.abandoned.is_set() and pending:
            log.warning("abandoning %d task(s) still running; rerun to resume", len(pending))
            client.cancel(pending)
            break
    return [_outcome(f, s) for f, s in zip(futures, sources, strict=True)]


def _outcome(future: Any, source: inputs.Source) -> Outcome:
    if not future.done() or future.cancelled():
        return failed(source.display, "interrupted while it ran; rerun to resume")
    try:
        result: Outcome = future.result()
        return result
    except Exception as exc:  # noqa: BLE001 (a worker died or the task raised: the input failed)
        return failed(source.display, f"dask task failed: {exc}")


class _EventStop:
    """A stop check backed by a distributed Event; an unreachable scheduler means stop."""

    def __init__(self, name: str) -> None:
        self._event = _import_distributed().Event(name)

    def is_set(self) -> bool:
        try:
            return bool(self._event.is_set())
        except Exception:  # noqa: BLE001 (whatever the client raises without its scheduler)
            return True


def process_on_worker(settings: Settings, out: str, source: inputs.Source,
                      stop_event: str, budget: Pacing, billing: str | None = None) -> Outcome:
    """The task: one video, start to end, with this worker process's shared backend, paced
    by its share of a fixed rate or by the run's one learned rate, and charging the run's
    shared billing budget (named `billing`, if capped)."""
    stop: StopCheck = _EventStop(stop_event)
    if stop.is_set():
        return failed(source.display, "interrupted before it started; rerun to resume")
    settings = worker_settings(settings, os.environ)
    plan = budget if isinstance(budget, ClusterPlan) else None
    if not isinstance(budget, ClusterPlan):
        settings = dataclasses.replace(settings, api=dataclasses.replace(
            settings.api, rate_limit=budget[_import_distributed().get_worker().address]))
    charges: Charges | None = None
    if billing is not None and settings.batch.max_billed_frames is not None:
        charges = SharedBudget(billing, settings.batch.max_billed_frames)
    runner = Runner(settings, out, backend=_backend(settings, plan), stop=stop, summary=False,
                    budget=charges)
    return runner.process(source)


def worker_settings(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The task's settings with this worker's own credentials: a task is a worker's entry
    point, as the command line is the client's, and keys never travel with tasks."""
    api = settings.api
    return dataclasses.replace(settings, api=dataclasses.replace(
        api, api_key=environ.get("CLARIFAI_PAT", "").strip() or None,
        user_id=environ.get("CLARIFAI_USER_ID") or api.user_id,
        app_id=environ.get("CLARIFAI_APP_ID") or api.app_id))


def _backend(settings: Settings, plan: ClusterPlan | None) -> Backend:
    """One backend (model, channel and pacing) per worker process and run, shared by its
    tasks."""
    key = (settings.api, settings.strategy.exact_decode, plan)
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = _make_backend(settings, plan)
            while len(_BACKENDS) > _BACKENDS_KEPT:
                _BACKENDS.popitem(last=False)
        _BACKENDS.move_to_end(key)
        return _BACKENDS[key]


def _make_backend(settings: Settings, plan: ClusterPlan | None) -> Backend:
    if plan is None or settings.api.backend != "clarifai":
        return make_backend(settings)
    from pipeline.backends.clarifai import ClarifaiBackend
    from pipeline.batch.dask_rate import ClusterRate
    api = settings.api
    return ClarifaiBackend.from_settings(api, pacing=lambda sleep: ClusterRate(
        plan, sleep, api_base=api.api_base, key=api.api_key or ""))
