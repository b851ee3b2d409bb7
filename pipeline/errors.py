"""One error hierarchy. The CLI is the only place that turns these into messages and exit codes."""

from __future__ import annotations

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


class BackendError(PipelineError):
    """Base of errors a prediction backend raises for one request."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientBackendError(BackendError):
    """Raised for a failure that may succeed on retry (unavailable, throttled, busy, timeout)."""

    def __init__(
        self, message: str, *, code: int | str | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message, code=code)
        self.throttled = throttled


class AuthError(BackendError):
    """Raised when the API rejects the credentials or account; stops the whole run."""


class RejectedInputError(BackendError):
    """Raised when the API rejects one chunk's content as bad input; fails that video."""


class OverLimitError(BackendError):
    """Raised when the API says a chunk is too large or too long; the chunk is re-split smaller."""


class LockedError(PipelineError):
    """Raised when another run holds the lock on a video's output folder."""


class Interrupted(PipelineError):
    """Raised when the run is stopped by SIGTERM or Ctrl-C; finished work is saved."""
