"""The one place that runs subprocesses."""

from __future__ import annotations

import logging
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from typing import IO

from pipeline.errors import FFmpegError

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


def run(argv: Sequence[str], *, timeout: float | None = None) -> str:
    """Run a command to completion; return its stdout, or raise FFmpegError with its stderr."""
    log.debug("run: %s", shlex.join(argv))
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise FFmpegError(argv, 127, f"{argv[0]} not found on PATH ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(argv, -1, f"timed out after {timeout} s") from exc
    if done.returncode != 0:
        raise FFmpegError(argv, done.returncode, done.stderr)
    return done.stdout


class Streamed:
    """A running command whose binary stdout the caller reads; stderr is spooled to a file."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        log.debug("popen: %s", shlex.join(self.argv))
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish/kill)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError as exc:
            self._err.close()
            raise FFmpegError(self.argv, 127, f"{self.argv[0]} not found on PATH ({exc})") from exc

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
