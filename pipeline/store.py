"""Files on disk: atomic writes (temporary file, fsync, rename) and the output folder's layout."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` so that a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The JSON in `path`, or None if it is missing or unreadable (never a partial result)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class VideoDir:
    """The layout of DIR/VIDEO_ID."""

    def __init__(self, out: str | Path, video_id: str) -> None:
        self.root = Path(out) / video_id
        self.timeline = self.root / "timeline.json"
        self.frames_csv = self.root / "frames.csv"
        self.chunks_json = self.root / "chunks.json"
        self.chunk_media = self.root / "chunks"
        self.results = self.root / "results"

    def result(self, index: int) -> Path:
        return self.results / f"chunk-{index:05d}.json"
