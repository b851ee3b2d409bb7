"""What a Dask task paces its requests by (`Pacing`): its worker's share of a fixed rate, or
the run's one learned rate on the scheduler, reached through a `ClusterPlan` (`dask_rate`
serves it, `dask_engine` hands it to the tasks). Light, and apart from both, so that neither
imports the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterPlan:
    """What a task needs to reach its run's one learned rate on the scheduler (`dask_rate`):
    the plugin's name, the salt of the memory's digests, and the most chunks in flight a
    worker may hold (None: --concurrency was given)."""

    name: str
    salt: str
    in_flight: int | None


# A worker's share of a fixed rate (by worker address), or the run's one learned rate.
Pacing = dict[str, float] | ClusterPlan
