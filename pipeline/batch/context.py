"""What every video of a run shares: the settings, the output folder, the backend, the stop
flag, the run key, and (URL mode) where chunks are staged."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from pipeline.backends import Backend
from pipeline.batch.billing import Budget, Charges
from pipeline.batch.stopping import StopCheck
from pipeline.batch.store import RunKey
from pipeline.send.stage import Stager
from pipeline.send.transport import Lifetime
from pipeline.settings import Settings
from pipeline.types import S3Name

HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class Context:
    """What every video of a run shares."""

    settings: Settings
    out: Path
    backend: Backend
    stop: StopCheck
    key: RunKey
    lifetime: Lifetime  # how long a URL sent must stay valid
    stager: Stager | None = None  # URL mode with --stage
    budget: Charges = dataclasses.field(default_factory=Budget)  # --max-billed-frames

    def staging_folder(self, video_id: str) -> S3Name:
        """Where this video's chunks are staged for this output folder: a rerun finds (and
        clears) what an earlier run left there; no other run or video shares it."""
        assert self.stager is not None
        tag = hashlib.sha256(str(self.out.resolve()).encode()).hexdigest()[:10]
        return self.stager.place.child(video_id, tag)
