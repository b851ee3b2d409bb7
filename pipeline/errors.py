"""One error hierarchy. The CLI is the only place that turns these into messages and exit codes."""

from __future__ import annotations

import errno
from collections.abc import Sequence


class PipelineError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """Raised when flags, settings or credentials are unusable; nothing is processed (exit 2)."""


class InputError(PipelineError):
    """Raised when one input video cannot be processed; that input fails, the batch goes on."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class FFmpegError(PipelineError):
    """Raised when an ffmpeg/ffprobe process exits non-zero; carries the command's stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{self.argv[0]} exited {returncode}: {self.summary}")

    @property
    def summary(self) -> str:
        """The most telling line of stderr (ffmpeg prints the real cause last)."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else "no error output"


class SegmentError(PipelineError):
    """Raised when a stretch of video cannot be made into chunks that fit the limits."""


class UndecodableChunk(SegmentError):
    """Raised when a chunk just written does not decode (ffmpeg's message is the text)."""


class ModelNotAvailableError(ConfigError):
    """Raised when a backend is asked for a model it does not have."""

    def __init__(self, model: str, available: Sequence[str]) -> None:
        super().__init__(
            f"model {model!r} is not available on this backend; available: {', '.join(available)}"
        )


class OutputError(PipelineError):
    """Raised when chunks or results cannot be written (disk full, read-only, no permission);
    that video fails, the batch goes on."""


class BackendError(PipelineError):
    """Base of errors a prediction backend raises for one request."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.attempts = 1  # requests spent on it, retries included (set by the backend)


class TransientBackendError(BackendError):
    """Raised for a failure that may succeed on retry (unavailable, throttled, busy, timeout)."""

    def __init__(
        self, message: str, *, code: int | str | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message, code=code)
        self.throttled = throttled
        self.pushback: float | None = None  # seconds the server asked the client to wait


class UnreachableError(TransientBackendError):
    """Raised once the API stayed unavailable through a whole retry schedule; every request
    after it fails at once, unretried, with the same reason, so the videos still to do fail
    fast (a later run may find the API back: it is transient, but not for this run)."""


class AuthError(BackendError):
    """Raised when the API rejects the credentials or account; stops the whole run."""


class RejectedInputError(BackendError):
    """Raised when the API rejects one chunk's content as bad input; fails that video."""


class OverLimitError(BackendError):
    """Raised when the API says a chunk is too large or too long; the chunk is re-split smaller."""


class FetchFailedError(TransientBackendError):
    """Raised when the API could not download a URL input (expired, refused, too slow for its
    own download timeout); the chunk gets a fresh URL (staged again) and is retried."""


class StagingError(PipelineError):
    """Raised when object storage refuses to upload, read or sign an object; that video fails
    (the message names s3://bucket/key, never a credential or a presigned URL)."""


class LockedError(PipelineError):
    """Raised when another run holds the lock on a video's output folder."""


class Interrupted(PipelineError):
    """Raised when the run is stopped by SIGTERM or Ctrl-C; finished work is saved."""


# errno values that say the disk, not the input, is the problem.
_DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.EFBIG: "file too large",
                errno.EIO: "input/output error"}
_DISK_TEXTS = ("No space left on device", "Disk quota exceeded", "Read-only file system")


def io_failure(exc: BaseException) -> OutputError | None:
    """The OutputError an OSError (or an ffmpeg that failed to write) amounts to, if it is a
    problem of the disk we write to; None otherwise."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, FFmpegError):
        text = next((t for t in _DISK_TEXTS if t in exc.stderr), None)
        return OutputError(f"cannot write chunks: {text.lower()}") if text else None
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return OutputError(f"cannot write{where}: {_DISK_ERRNOS[exc.errno]}")
    return None


class StillBeingWritten(InputError):
    """Raised when a source file is growing, or changed while it was processed; the video is
    deferred (never done in part) and a later run takes it once it has settled."""


class DownloadIncomplete(InputError):
    """Raised when a URL source's body ends before the size its server declared (`declared`
    None: before the end of a chunked body)."""

    def __init__(self, source: str, received: int, declared: int | None) -> None:
        super().__init__(source, (
            f"download incomplete: received {received} bytes (the connection closed before "
            "the body's end)") if declared is None else (
            f"download incomplete: received {received} of {declared} bytes (the connection "
            "closed early)"))


class ClientGoneError(PipelineError):
    """Raised inside `serve` when a request's client has cancelled, its deadline has passed, or
    the server is stopping: that request's work stops (a download closed, a decode killed) and
    nothing more is answered."""


class ImplausibleAnswerError(BackendError):
    """Raised when an answer cannot be what its chunk gives (frames missing or repeated, times
    outside the chunk, values that are not numbers from 0 to 1); the chunk is asked once more,
    then its video fails."""


class UnwritableNumberError(OutputError):
    """Raised when a value JSON cannot spell (NaN, an infinity) would be written into an output;
    refused, so that no output holds text a JSON reader rejects."""

class ProcessKilled(FFmpegError):
    """Raised when we kill an ffmpeg/ffprobe: past its deadline, stalled (no output for the
    stall timeout), or stopped because the run is ending; the text says which."""

    def __init__(self, argv: Sequence[str], reason: str) -> None:
        super().__init__(argv, -9, reason)
        self.args = (f"{self.argv[0]} {reason}",)


class DamagedIndexError(PipelineError):
    """Raised when an MP4's sample index contradicts its boxes or the file (a count past the
    box holding it or past the file, a zero timescale, frame times past the stated duration
    or shared by two frames); that input fails."""


class BudgetReached(PipelineError):
    """Raised before a request that would take the run past --max-billed-frames: it is not
    sent, nor is any request after it; the videos left stop, and a rerun with a larger budget
    finishes them without billing again what was done."""


class DeliveryError(PipelineError):
    """Raised inside the notifier when one attempt to deliver a callback fails (refused, timed
    out, answered other than 2xx); retried within its bound, then noted in summary.json, never
    raised to the run."""
