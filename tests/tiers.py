"""Test tiers, a pytest plugin (loaded by conftest.py): every test module says, in a
module-level `pytestmark`, which tier it is in and what it needs.

Exactly one tier:
- `pure`: the test runs in the pytest process alone. Neither the test nor the setup of its
  fixtures starts a process (ffmpeg, ffprobe, node, chromium, the CLI) or uses the network (a
  socket bound, connected or resolved, a gRPC server or channel), even on 127.0.0.1. Enforced:
  a pure test that does fails, naming what it did, even if the code under test swallowed the
  error. `make check` runs these.
- `integration`: everything else (the real ffmpeg on generated media, the CLI as a child
  process, servers on 127.0.0.1).
What an integration module needs besides Python and ffmpeg: `browser`, `node`, `s3`, `dask`;
and `slow` for the modules that take long. A module without its tier stops the session at
collection, naming it, so a new module cannot slip out of the tiers."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

TIERS = ("pure", "integration")
NEEDS = ("browser", "node", "s3", "dask")
# Audit events (sys.addaudithook) of starting a process or using the network.
_PROCESS = ("subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec", "os.fork",
            "os.forkpty", "os.system", "pty.spawn")
_NETWORK = ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg",
            "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr")
# gRPC opens its sockets in C, where no audit event is raised: its entry points are watched.
_GRPC = ("server", "insecure_channel", "secure_channel")


class NotPure(Exception):
    """A test marked pure started a process or used the network."""


class _Guard:
    """What the pure test being watched did that it may not. Threads that were running before
    it started (a server left by an earlier integration test) are not its doing."""

    def __init__(self) -> None:
        self.test: str | None = None
        self.others: frozenset[threading.Thread] = frozenset()
        self.done: list[str] = []

    def watching(self) -> bool:
        return self.test is not None and threading.current_thread() not in self.others

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.test is not None and event.startswith(_PROCESS + _NETWORK) and self.watching():
            self.refuse(f"{event} {repr(args[:2])[:120]}")

    def refuse(self, what: str) -> None:
        self.done.append(what)
        raise NotPure(f"{self.test} is marked pure but did {what}")


_GUARD = _Guard()


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_GUARD.audit)  # cannot be removed: idle outside pure tests
    import grpc
    for name in _GRPC:
        setattr(grpc, name, _watched(name, getattr(grpc, name)))


def _watched(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, refused inside a pure test (anywhere else, unchanged)."""
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        if _GUARD.watching():
            _GUARD.refuse(f"grpc.{name}()")
        return original(*args, **kwargs)
    return call


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every module that has tests carries exactly one tier; a pure one needs nothing more."""
    problems = sorted({problem for item in items if (problem := _tier_problem(item))})
    if problems:
        raise pytest.UsageError("test tiers (tests/tiers.py):\n  " + "\n  ".join(problems))


def _tier_problem(item: pytest.Item) -> str | None:
    module = getattr(item, "module", None)
    if module is None:
        return None
    marks = getattr(module, "pytestmark", [])
    names = {m.name for m in (marks if isinstance(marks, list) else [marks])}
    where = item.path.name
    tiers = [t for t in TIERS if t in names]
    if len(tiers) != 1:
        return (f"{where}: a module-level `pytestmark` must carry exactly one of "
                f"{', '.join(TIERS)}, not {tiers or 'none'}")
    if tiers == ["pure"] and (needs := sorted(names & set(NEEDS))):
        return f"{where}: pure, yet needs {', '.join(needs)}: that is integration"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    with _guarding(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with _guarding(item):
        return (yield)


@contextmanager
def _guarding(item: pytest.Item) -> Iterator[None]:
    """Watch a pure test's setup or call; fail it afterwards for anything it did, even if what
    it called caught the NotPure raised at the time."""
    if item.get_closest_marker("pure") is None:
        yield
        return
    _GUARD.done, _GUARD.test = [], item.nodeid
    _GUARD.others = frozenset(t for t in threading.enumerate()
                              if t is not threading.main_thread())
    try:
        yield
    finally:
        _GUARD.test = None
    if _GUARD.done:
        raise NotPure(f"{item.nodeid} is marked pure but did: {'; '.join(_GUARD.done)}")
