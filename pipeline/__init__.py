"""video-pipeline: long videos through a short-video recognition API, back as one timeline.

The Python API (pipeline.api): `run_batch(inputs, out, **settings)` runs a batch as
`video-pipeline run` does and returns one outcome per input; `load_timeline(path)` reads a
timeline.json into typed values; a bad setting raises `ConfigError`. They are imported on first
use, so `import pipeline` (and the command line's --help) stays light."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_LAZY = {
    "run_batch": "pipeline.api", "BatchResult": "pipeline.api", "InputOutcome": "pipeline.api",
    "StopFlag": "pipeline.batch.stopping", "Status": "pipeline.batch.summary",
    "load_timeline": "pipeline.output.loaded", "Timeline": "pipeline.output.loaded",
    "ConfigError": "pipeline.errors", "AuthError": "pipeline.errors",
    "InputError": "pipeline.errors", "PipelineError": "pipeline.errors",
    "__version__": "pipeline.version",
}
__all__ = ["AuthError", "BatchResult", "ConfigError", "InputError", "InputOutcome",
           "PipelineError", "Status", "StopFlag", "Timeline", "__version__", "load_timeline",
           "run_batch"]

if TYPE_CHECKING:
    from pipeline.api import BatchResult, InputOutcome, run_batch
    from pipeline.batch.stopping import StopFlag
    from pipeline.batch.summary import Status
    from pipeline.errors import AuthError, ConfigError, InputError, PipelineError
    from pipeline.output.loaded import Timeline, load_timeline
    from pipeline.version import __version__


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
