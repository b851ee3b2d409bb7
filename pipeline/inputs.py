"""Inputs: files, folders, manifests -> the list of sources to process, each with a stable id."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".f4v",
    ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts", ".mts", ".3gp", ".3g2", ".ogv", ".mxf", ".vob",
    ".divx", ".dv", ".y4m",
}
MANIFEST_EXTENSIONS = {".txt"}
_SAMPLE = 64 * 1024
_SAMPLES = 8


@dataclass(frozen=True)
class Source:
    """One input to process; `error` is set when the input itself could not be resolved."""

    path: str
    error: str | None = None


def expand(inputs: list[str]) -> list[Source]:
    """Files as given, folders searched recursively for video files, manifests read line by line;
    duplicates (the same file named twice) are dropped."""
    seen: set[str] = set()
    out: list[Source] = []
    for item in inputs:
        for source in _expand_one(item):
            key = os.path.realpath(source.path) if source.error is None else source.path
            if key not in seen:
                seen.add(key)
                out.append(source)
    return out


def _expand_one(item: str) -> list[Source]:
    path = Path(item)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        return [Source(p) for p in found] or [Source(item, "folder holds no video files")]
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        return _read_manifest(path)
    return [Source(item)]


def _read_manifest(path: Path) -> list[Source]:
    base = path.parent
    out: list[Source] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line if "://" in line or os.path.isabs(line) else str(base / line)
        out.append(Source(entry))
    return out or [Source(str(path), "manifest lists no inputs")]


def fingerprint(path: str) -> str:
    """A cheap content fingerprint: the size and eight 64 KiB samples spread over the file."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for i in range(_SAMPLES):
            fh.seek(max(0, (size - _SAMPLE) * i // (_SAMPLES - 1)))
            digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()


def video_id(path: str) -> str:
    """Stable for the same content; different for different content under the same name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-.")[:48] or "video"
    try:
        return f"{stem}-{fingerprint(path)[:12]}"
    except OSError:
        return f"{stem}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"
