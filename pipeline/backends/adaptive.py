"""`--rate-limit auto`: find the account's limit by listening to the server, and hold it.

The limit that matters is counted at the API's door, per key, and shared with whatever else
uses the key; the client is not told its share. So the rate is steered by the answers alone:

- successes raise it, but only while the rate is what holds requests back (a request that
  found the pacer idle says nothing about a higher rate);
- a throttle cuts it (multiplicatively, once per round: throttles of requests sent before the
  last cut are answered by that cut already); latency and other errors never do;
- a throttle marks the rate that was too much; the rate climbs back to just under it, and
  probes above it only slowly, so throttles stay rare;
- a limit the server states ("exceeded limit of N requests per second") caps the rate at a
  share of N: the key's whole limit is an upper bound, never this client's share.

Starts are spaced evenly, 1/rate apart (`Pacer`): bursts are what a server counting arrivals
in any 1-second window throttles first. This module is plain Python on an injected clock, so
that one controller can run in a process or on a Dask scheduler (`batch.dask_rate`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Clarifai's documented limit, requests a second per user (docs/clarifai-api.md).
DOCUMENTED_LIMIT = 15.0
_STATED = re.compile(r"limit of (\d+(?:\.\d+)?) requests? per second", re.IGNORECASE)


@dataclass(frozen=True)
class Tuning:
    """The controller's constants (requests a second, seconds, or shares)."""

    start: float = DOCUMENTED_LIMIT / 3  # cold start: safely below the documented limit
    least: float = 0.2  # never slower than one request every 5 s
    grow: float = 1.3  # before the first throttle: x this for each second of successes
    # A throttle: the rate it was sent at, x the first of these; x the next if the last cut
    # was less than `memory` s before (that cut was not enough), and so on.
    cuts: tuple[float, ...] = (0.7, 0.5)
    memory: float = 5.0
    gentle: float = 0.85  # the cut for one throttle alone at the top (see `throttled`)
    settle: float = 0.88  # the plateau: this share of a rate found too much
    recover: float = 2.0  # seconds: time constant of the climb back to the plateau
    patience: float = 6.0  # seconds above the plateau after which the probe is 36% above it
    most_patience: float = 12.0  # each cut after the first doubles the patience, up to this
    stated_share: float = 0.9  # at most this share of a limit the server states
    binding_gap: float = 1.5  # a start within this many intervals of the last is rate-bound


TUNING = Tuning()


@dataclass(frozen=True)
class Ticket:
    """One request's start: when (the controller's clock), at what rate, and whether the rate
    was what held it back (the pacer busy: starts back to back)."""

    sent: float
    rate: float
    binding: bool


def stated_limit(text: str) -> float | None:
    """N of a throttle's "exceeded limit of N requests per second", if the text states it."""
    found = _STATED.search(text)
    return float(found.group(1)) if found else None


class Controller:
    """The rate, raised by successes and cut by throttles (see the module's docstring).

    Not thread-safe: its owner holds a lock (`ratecontrol.AdaptiveRate`) or runs it on one
    event loop (the Dask scheduler)."""

    def __init__(self, tuning: Tuning = TUNING, *, start: float | None = None,
                 too_much: float | None = None, stated: float | None = None,
                 most: float | None = None) -> None:
        self.tuning = tuning
        self.most = most if most is not None else math.inf  # --rate-limit-max
        self.stated = stated  # the limit the server stated, if it did
        self.rate = self._bounded(start if start is not None else tuning.start)
        # The rate last throttled (a run's memory may bring one): the climb's target.
        self.too_much = too_much
        self.last_cut = -math.inf
        self.peak_ok = 0.0  # the highest rate that ran rate-bound since the last cut
        self.above = 0.0  # rate-bound seconds spent above the plateau since the last cut
        self.patience = tuning.patience
        self.depth = 0  # cuts in a row, each less than `memory` s after the last
        self.highest = 0.0  # the highest rate ever throttled
        self.settle = tuning.settle
        self.throttles = 0
        self.successes = 0

    # -- what the pacer asks -------------------------------------------------------------------
    def interval(self) -> float:
        return 1.0 / self.rate

    def ticket(self, now: float, last_start: float | None) -> Ticket:
        gap = math.inf if last_start is None else now - last_start
        return Ticket(now, self.rate, gap <= self.tuning.binding_gap * self.interval())

    # -- what the answers say ------------------------------------------------------------------
    def succeeded(self, ticket: Ticket) -> None:
        """An accepted request: the rate climbs, if the rate was what held requests back."""
        self.successes += 1
        if not ticket.binding:
            return
        if ticket.sent > self.last_cut:
            self.peak_ok = max(self.peak_ok, ticket.rate)
        self.rate = self._bounded(self.rate + self._step())

    def _step(self) -> float:
        """The raise one success brings (a second's worth of them makes the per-second
        rule): x grow before any throttle; after one, toward the plateau, then a slow probe."""
        t, r = self.tuning, self.rate
        if self.too_much is None:
            return r * (math.pow(t.grow, 1 / r) - 1)
        plateau = self._bounded(self.settle * self.too_much)
        if r < plateau:  # an approach, then at least the probe's pace: it gets there
            return max((plateau - r) / t.recover, 0.06 * plateau / self.patience) / r
        # Cubic in the time spent above the plateau (as CUBIC's window grows past W_max): a
        # share that others have left is found again, without crowding a limit just found.
        # x = s / patience: + 0.06 x + 0.3 x^3 of the plateau.
        x = self.above / self.patience
        self.above += 1 / r
        if r >= min(self.highest, self.top()):  # past every rate found too much: more room
            self.patience = t.patience
        return plateau * (0.06 + 0.9 * x * x) / (self.patience * r)

    def throttled(self, ticket: Ticket, now: float, stated: float | None = None) -> bool:
        """A throttled request: the rate is cut, once for all the requests sent at the rate
        that was too much. True if this throttle cut the rate."""
        self.throttles += 1
        if stated is not None and math.isfinite(stated) and stated > 0:
            self.stated = stated  # the newest word on the limit (a plan may have changed)
            self.rate = self._bounded(self.rate)
        if ticket.sent <= self.last_cut:
            return False
        t = self.tuning
        self.depth = self.depth + 1 if now - self.last_cut < t.memory else 0
        # One throttle alone at the most the stated limit allows may be arrivals bunched on
        # the way: a gentle cut, and the plateau stays. Otherwise a limit (or a share) was
        # found: cut, deeper if the last cut was not enough, and settle under it.
        alone_at_top = self.depth == 0 and ticket.rate >= 0.97 * self.top()
        if self.too_much is not None and not alone_at_top:
            # The limit was met again: probe above the plateau more patiently.
            self.patience = min(2 * self.patience, t.most_patience)
        self.highest = max(self.highest, ticket.rate)
        self.settle = 1.0 if alone_at_top else t.settle
        factor = t.gentle if alone_at_top else t.cuts[min(self.depth, len(t.cuts) - 1)]
        self.too_much = ticket.rate
        self.rate = self._bounded(min(self.rate, ticket.rate) * factor)
        self.last_cut = now
        self.above = 0.0
        self.peak_ok = 0.0
        return True

    def top(self) -> float:
        """The most the rate may be: --rate-limit-max, and a share of a stated limit."""
        top = self.most
        if self.stated is not None:
            top = min(top, self.tuning.stated_share * self.stated)
        return top

    def _bounded(self, rate: float) -> float:
        """Within the floor, and never above the top (--rate-limit-max wins over the floor)."""
        return min(self.top(), max(self.tuning.least, rate))

    def learned(self) -> float:
        """The rate to start the next run at: the highest rate that ran rate-bound since the
        last cut, or the plateau under the rate found too much, whichever is more (before any
        of either, where it started)."""
        plateau = 0.0 if self.too_much is None else self.settle * self.too_much
        found = max(self.peak_ok, plateau) or self.rate
        return round(self._bounded(found), 3)


class Pacer:
    """Starts spaced at least 1/rate apart (the rate as it is when each start is taken): a
    start is taken at the moment it goes, so a waiter that wakes late starts late and pushes
    the next start back rather than crowding it."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.last_start: float | None = None
        self.starts = 0

    def take(self, now: float) -> Ticket | float:
        """A ticket to start now, or the seconds to wait before asking again."""
        if self.last_start is not None:
            wait = self.last_start + self.controller.interval() - now
            if wait > 0:
                return wait
        ticket = self.controller.ticket(now, self.last_start)
        self.last_start = now
        self.starts += 1
        return ticket
