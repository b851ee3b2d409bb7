"""The one place that runs subprocesses."""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import IO

from pipeline.errors import FFmpegError

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


PIPE_INPUT = "pipe:0"  # ffmpeg reads its input from stdin (a chunk built in memory)


def run(argv: Sequence[str], *, timeout: float | None = None, stdin: bytes | None = None) -> str:
    """Run a command to completion, feeding it `stdin` if given; return its stdout, or raise
    FFmpegError with its stderr."""
    log.debug("run: %s", shlex.join(argv))
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout,
                              input=stdin if stdin is not None else b"")
    except FileNotFoundError as exc:
        raise FFmpegError(argv, 127, f"{argv[0]} not found on PATH ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(argv, -1, f"timed out after {timeout} s") from exc
    if done.returncode != 0:
        raise FFmpegError(argv, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout.decode(errors="replace")


class Streamed:
    """A running command whose binary stdout the caller reads; stderr is spooled to a file;
    `stdin` bytes, if given, are fed by a thread while the caller reads."""

    def __init__(self, argv: Sequence[str], *, stdin: bytes | None = None) -> None:
        self.argv = list(argv)
        log.debug("popen: %s", shlex.join(self.argv))
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish/kill)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=self._err,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE)
        except FileNotFoundError as exc:
            self._err.close()
            raise FFmpegError(self.argv, 127, f"{self.argv[0]} not found on PATH ({exc})") from exc
        if stdin is not None:
            threading.Thread(target=self._feed, args=(stdin,), daemon=True).start()

    def _feed(self, data: bytes) -> None:
        """Write `data` to the command's stdin; a command that stops reading early is fine."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(data)
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def finish(self) -> None:
        """Wait for the command and raise FFmpegError if it failed."""
        code = self.proc.wait()
        self._err.seek(0)
        stderr = self._err.read().decode(errors="replace")
        self._err.close()
        if code != 0:
            raise FFmpegError(self.argv, code, stderr)

    def kill(self) -> None:
        """Stop the command early (the caller has what it needs, or is giving up)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._err.close()


def media_input(path: str) -> str:
    """`path` as ffmpeg/ffprobe must be given it: a local file through the `file:` protocol, so
    that a name like `-version.mp4` is not read as an option, nor `http:x.mp4` as a protocol;
    URLs (http, https, s3 presigned) as they are."""
    if path.lower().startswith(("http://", "https://")):
        return path
    return f"file:{path}"
