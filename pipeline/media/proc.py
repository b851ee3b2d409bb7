"""The one place that runs subprocesses. Every child runs under a deadline (`Deadlines`, set
once by the runner through `configure`), is listed while it lives (`kill_all` ends them all,
for a run that must stop now), and is killed by the kernel if the thread that started it, or
this process, dies (Linux's parent-death signal, through setpriv): none outlives the run."""

from __future__ import annotations

import contextlib
import functools
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from pipeline import validate
from pipeline.errors import FFmpegError, ProcessKilled

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


PIPE_INPUT = "pipe:0"  # ffmpeg reads its input from stdin (a chunk built in memory)

# The slowest a pass over a file may read it (bytes a second): a deadline allows a second for
# each of these on top of the media's own time, so a large file on a slow disk is not cut off.
READ_FLOOR = 1_000_000


@dataclass(frozen=True)
class Deadlines:
    """How long a child may take. A header read (ffprobe) gets `probe_timeout` seconds; a pass
    over media gets that plus `time_factor` seconds a second of media plus a second a
    READ_FLOOR bytes; a streamed child (decoding) is killed once the caller has waited
    `stall_timeout` seconds for output that did not come (plus one sampling interval at the
    time factor: decoding one interval yields one frame)."""

    probe_timeout: float = 60.0
    stall_timeout: float = 120.0
    time_factor: float = 10.0

    def __post_init__(self) -> None:
        validate.at_least("VIDEO_PIPELINE_PROBE_TIMEOUT", self.probe_timeout, 0, above=True)
        validate.at_least("VIDEO_PIPELINE_FFMPEG_STALL_TIMEOUT", self.stall_timeout, 0,
                          above=True)
        validate.at_least("VIDEO_PIPELINE_FFMPEG_TIME_FACTOR", self.time_factor, 0,
                          above=True)

    def deadline(self, *, media_seconds: float = 0.0, size_bytes: int = 0) -> float:
        """The deadline of a pass over `media_seconds` of media held in `size_bytes`."""
        return self.probe_timeout + self.time_factor * media_seconds + size_bytes / READ_FLOOR

    def stall(self, *, step_seconds: float = 0.0) -> float:
        """How long a streamed child's output may stand still, one output every `step_seconds`
        of media."""
        return self.stall_timeout + self.time_factor * step_seconds


_deadlines = Deadlines()


def configure(deadlines: Deadlines) -> None:
    """Set the deadlines of every child started from now on (the runner does, once, from its
    Settings: library code never reads the environment)."""
    global _deadlines
    _deadlines = deadlines


def deadlines() -> Deadlines:
    """The deadlines in force."""
    return _deadlines


# -- the children alive ----------------------------------------------------------------------
# Reentrant: kill_all may run in a signal handler on the main thread while that thread is
# inside _spawn, holding it.
_lock = threading.RLock()
_live: dict[subprocess.Popen[bytes], str | None] = {}  # each child -> why we killed it, if we did


@functools.cache
def dies_with_parent() -> tuple[str, ...]:
    """The wrapper that has the kernel kill a child when the thread that started it ends (its
    process killed outright included): util-linux's `setpriv --pdeathsig KILL`, which sets
    PR_SET_PDEATHSIG and execs the command (the setting survives exec); () where there is no
    such setpriv. Not prctl in a preexec_fn: that makes Python fork() (not vfork) and run code
    in the child, where gRPC's fork handlers then ran and aborted ffmpeg (SIGABRT, "epoll_wait
    error: Bad file descriptor" in its stderr) in the tests that run `serve` beside the run."""
    found = shutil.which("setpriv")
    if found is None or not sys.platform.startswith("linux"):
        return ()
    wrapper = (found, "--pdeathsig", "KILL", "--")
    try:
        works = subprocess.run([*wrapper, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ()
    return wrapper if works.returncode == 0 else ()


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    log.debug("run: %s", shlex.join(argv))
    program = shutil.which(argv[0])
    if program is None:
        raise FFmpegError(argv, 127, f"{argv[0]} not found on PATH")
    wrapper = dies_with_parent()
    with _lock:  # listed before kill_all can look
        child = subprocess.Popen([*wrapper, program, *argv[1:]], **kwargs)
        _live[child] = None
    return child


def _kill(child: subprocess.Popen[bytes], reason: str) -> bool:
    """Kill `child` for `reason` if it still runs; whether it did."""
    with _lock:
        if child not in _live or child.poll() is not None:
            return False
        _live[child] = _live[child] or reason
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    return True


def _forget(child: subprocess.Popen[bytes]) -> str | None:
    """Drop an ended child from the list; why we killed it, if we did."""
    with _lock:
        return _live.pop(child, None)


def kill_all() -> int:
    """Kill every child still running (the run is stopping); how many there were. Their callers
    get a ProcessKilled that says "stopped". Safe to call from a signal handler."""
    with _lock:
        children = list(_live)
    return sum(_kill(child, "stopped: the run is ending") for child in children)


def running() -> int:
    """How many children are running now."""
    with _lock:
        return sum(1 for child in _live if child.poll() is None)


# -- running one ---------------------------------------------------------------------------
def run(argv: Sequence[str], *, timeout: float, stdin: bytes | None = None) -> str:
    """Run a command to completion within `timeout` seconds, feeding it `stdin` if given;
    return its stdout, or raise FFmpegError with its stderr (ProcessKilled past the deadline)."""
    command = list(argv)
    child = _spawn(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        try:
            out, err = child.communicate(stdin or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(child, f"timed out after {timeout:g} s")
            out, err = child.communicate()
    finally:
        if child.poll() is None:  # interrupted while waiting: take the child along
            child.kill()
            child.wait()
        killed = _forget(child)
    if killed is not None:
        raise ProcessKilled(command, killed)
    if child.returncode != 0:
        raise FFmpegError(command, child.returncode, err.decode(errors="replace"))
    return out.decode(errors="replace")


class Streamed:
    """A running command whose binary stdout the caller reads (`read`); stderr is spooled to a
    file; `stdin` bytes, if given, are fed by a thread while the caller reads.

    A watchdog kills it once the caller has waited `stall` seconds for output that did not
    come, or `timeout` seconds in all (time the caller spends elsewhere does not count: a slow
    consumer is not the command's fault)."""

    def __init__(self, argv: Sequence[str], *, timeout: float, stall: float,
                 stdin: bytes | None = None) -> None:
        self.argv = list(argv)
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish/kill)
        try:
            self.proc = _spawn(self.argv, stdout=subprocess.PIPE, stderr=self._err, bufsize=0,
                               stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE)
        except FFmpegError:
            self._err.close()
            raise
        self._clock = _WaitClock(timeout, stall)
        self._ended = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="proc-watchdog").start()
        if stdin is not None:
            threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()

    def _feed(self, data: bytes) -> None:
        """Write `data` to the command's stdin; a command that stops reading early is fine."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(data)
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()

    def _watch(self) -> None:
        every = max(0.05, min(1.0, self._clock.stall / 4, self._clock.timeout / 4))
        while not self._ended.wait(every):
            reason = self._clock.overdue()
            if reason is not None:
                _kill(self.proc, reason)
                return

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def read(self, size: int) -> bytes:
        """`size` bytes of the command's output, fewer only where it ends (or is killed)."""
        got = bytearray()
        with self._clock.waiting():
            while len(got) < size:
                part = self.stdout.read(size - len(got))
                if not part:
                    break
                got += part
                self._clock.advanced()
        return bytes(got)

    def finish(self) -> None:
        """Wait for the command and raise FFmpegError if it failed (ProcessKilled if the
        watchdog or kill_all ended it)."""
        with self._clock.waiting():
            code = self.proc.wait()
        killed = self._end()
        self.stdout.close()
        self._err.seek(0)
        stderr = self._err.read().decode(errors="replace")
        self._err.close()
        if killed is not None:
            raise ProcessKilled(self.argv, killed)
        if code != 0:
            raise FFmpegError(self.argv, code, stderr)

    def kill(self) -> None:
        """Stop the command early (the caller has what it needs, or is giving up)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._end()
        self._err.close()

    def _end(self) -> str | None:
        self._ended.set()
        return _forget(self.proc)


class _WaitClock:
    """The time a caller has spent waiting on a command, and since its output last moved."""

    def __init__(self, timeout: float, stall: float) -> None:
        self.timeout = timeout
        self.stall = stall
        self._lock = threading.Lock()
        self._spent = 0.0  # in waits that are over
        self._began: float | None = None  # the wait under way
        self._moved = 0.0  # when output last came in it

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            self._began = self._moved = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                assert self._began is not None
                self._spent += time.monotonic() - self._began
                self._began = None

    def advanced(self) -> None:
        with self._lock:
            self._moved = time.monotonic()

    def overdue(self) -> str | None:
        """Why the command must be killed now, or None."""
        now = time.monotonic()
        with self._lock:
            if self._began is None:
                return None
            if now - self._moved > self.stall:
                return f"stalled: no output for {self.stall:g} s"
            if self._spent + now - self._began > self.timeout:
                return f"timed out after {self.timeout:g} s"
        return None


def media_input(path: str) -> str:
    """`path` as ffmpeg/ffprobe must be given it: a local file through the `file:` protocol, so
    that a name like `-version.mp4` is not read as an option, nor `http:x.mp4` as a protocol;
    URLs (http, https, s3 presigned) as they are."""
    if path.lower().startswith(("http://", "https://")):
        return path
    return f"file:{path}"


def input_options(path: str) -> list[str]:
    """The options that go before `path`'s input: a local file (or stdin) may use its own
    protocol and no other, so that a playlist or concat script read as one cannot reach the
    network or another protocol; a URL is read as it is."""
    if path == PIPE_INPUT:
        return ["-protocol_whitelist", "pipe"]
    if path.lower().startswith(("http://", "https://")):
        return []
    return ["-protocol_whitelist", "file"]


def input_args(path: str) -> list[str]:
    """`-i` and `path`, with its input options (stdin as PIPE_INPUT)."""
    return [*input_options(path), "-i", path if path == PIPE_INPUT else media_input(path)]
