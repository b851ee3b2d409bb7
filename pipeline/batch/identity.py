"""VIDEO_ID: stable for the same content, different for different content under one name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.batch.download import safe_name

_SAMPLE = 64 * 1024
_SAMPLES = 16


def fingerprint(path: str) -> str:
    """A cheap content fingerprint: the size and 64 KiB samples spread over the file (the first
    and last included, where MP4/MOV keep their index). Content only: a copied, moved or touched
    file keeps its id and is not redone; an edit that keeps the size and misses every sample
    is not seen (use --force)."""
    stat = os.stat(path)
    digest = hashlib.sha256(str(stat.st_size).encode())
    with open(path, "rb") as fh:
        for i in range(_SAMPLES):
            fh.seek(max(0, (stat.st_size - _SAMPLE) * i // (_SAMPLES - 1)))
            digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()


def _stem(name: str) -> str:
    """An id's readable part: the file name without its extension, made safe."""
    return safe_name(Path(name).stem, 48) or "video"


def video_id(path: str) -> str:
    """Stable for the same content; different for different content under the same name."""
    stem = _stem(path)
    try:
        return f"{stem}-{fingerprint(path)[:12]}"
    except OSError:
        return f"{stem}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"


def content_id(file_name: str, path: str) -> str:
    """A downloaded URL source's id, from its content as `video_id` has it, named after the
    URL's file name: for a server that declares no size, whose id could not follow its
    content otherwise."""
    return f"{_stem(file_name)}-{fingerprint(path)[:12]}"


def remote_id(file_name: str, size: int, version: str, *, where: str | None = None) -> str:
    """A URL source's id, from what its server says of it, without downloading it: an object
    in storage by its size and ETag (for a single-part upload, the content's MD5); an http(s)
    URL by its address without the query string (`where`), its size and its ETag or
    Last-Modified (or by address and size alone, when the server gives neither)."""
    stem = _stem(file_name)
    basis = "\n".join(part for part in (where, str(size), version) if part is not None)
    return f"{stem}-{hashlib.sha256(basis.encode()).hexdigest()[:12]}"
