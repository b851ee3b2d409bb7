"""Inputs: files, folders, manifests and URLs -> the deduplicated sources to process, each with a
stable id.

A `Source.path` is what the user gave (a path, or a URL with its query string); messages and
outputs use `Source.display`, which never holds a URL's query string or credentials (pre-signed
URLs carry their signature there)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import InputError

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".f4v",
    ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts", ".mts", ".3gp", ".3g2", ".ogv", ".mxf", ".vob",
    ".divx", ".dv", ".y4m",
}
MANIFEST_EXTENSIONS = {".txt", ".csv", ".jsonl"}
PATH_COLUMNS = ("path", "url", "source", "file", "video")
# Container signatures at the head of a file: (offset, bytes). Checked only for files in a folder
# that have no extension, so a folder of oddly named camera dumps is still found (400 bytes each).
_MAGIC = (
    (4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"FLV"), (0, b"\x00\x00\x01\xba"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"), (0, b"OggS"), (0, b"YUV4MPEG2"),
)
_SAMPLE = 64 * 1024
_SAMPLES = 16
DOWNLOAD_MAX_BYTES = int(os.environ.get("VIDEO_PIPELINE_DOWNLOAD_MAX_BYTES", 20_000_000_000))
DOWNLOAD_TIMEOUT_S = float(os.environ.get("VIDEO_PIPELINE_DOWNLOAD_TIMEOUT", 30))
_COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input to process; `error` is set when the input itself could not be resolved."""

    path: str
    error: str | None = None
    label: str | None = None  # the name to show, when `path` was rewritten (absolute, for Dask)

    @property
    def is_url(self) -> bool:
        return is_url(self.path)

    @property
    def display(self) -> str:
        """The name used in messages, summary.json and timeline.json."""
        if self.label is not None:
            return self.label
        return redact(self.path) if self.is_url else self.path


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def redact(url: str) -> str:
    """The URL without its query string, fragment or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def expand(inputs: list[str]) -> list[Source]:
    """Files as given, folders searched recursively for video files, manifests read line by line,
    URLs as given; duplicates (the same file or URL named twice, however reached) are dropped."""
    seen: set[str] = set()
    out: list[Source] = []
    for item in inputs:
        for source in _expand_one(item):
            key = source.path
            if source.error is None and not source.is_url:
                key = os.path.realpath(source.path)
            if key not in seen:
                seen.add(key)
                out.append(source)
    return out


def _expand_one(item: str) -> list[Source]:
    if is_url(item):
        return [Source(item)]
    path = Path(item)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.is_file() and _looks_like_video(p))
        return [Source(p) for p in found] or [Source(item, "folder holds no video files")]
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        try:
            return _read_manifest(path)
        except (OSError, ValueError) as exc:
            return [Source(item, f"manifest is unreadable: {exc}")]
    return [Source(item)]


def _looks_like_video(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix or path.name.startswith("."):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(400)
    except OSError:
        return False
    return any(head[at:at + len(magic)] == magic for at, magic in _MAGIC) or _is_mpegts(head)


def _is_mpegts(head: bytes) -> bool:
    """MPEG-TS: a 0x47 sync byte every 188 bytes."""
    return len(head) > 376 and head[0] == head[188] == head[376] == 0x47


def _read_manifest(path: Path) -> list[Source]:
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    entries = (_csv_entries(text) if suffix == ".csv" else _jsonl_entries(text)
               if suffix == ".jsonl" else _txt_entries(text))
    out = [Source(_resolve(entry, path.parent)) for entry in entries]
    return out or [Source(str(path), "manifest lists no inputs")]


def _resolve(entry: str, base: Path) -> str:
    """Relative paths in a manifest are relative to the manifest's folder."""
    return entry if is_url(entry) or "://" in entry or os.path.isabs(entry) else str(base / entry)


def _txt_entries(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _csv_entries(text: str) -> list[str]:
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    if column is None:
        raise ValueError(f"no column named {' or '.join(PATH_COLUMNS)} in the header row")
    cells = (row[column].strip() for row in rows[1:] if len(row) > column)
    return [cell for cell in cells if cell and not cell.startswith("#")]


def _jsonl_entries(text: str) -> list[str]:
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        value = json.loads(line)
        if isinstance(value, dict):
            value = next((value[c] for c in PATH_COLUMNS if isinstance(value.get(c), str)), None)
        if not isinstance(value, str):
            raise ValueError(f"line {number} has no {'/'.join(PATH_COLUMNS)} string")
        out.append(value)
    return out


def download(url: str, dest_dir: str, *, max_bytes: int = DOWNLOAD_MAX_BYTES,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Stream `url` to a file in `dest_dir` and return its path; raise InputError (naming the URL
    without its query string) on a failed or oversized download."""
    shown = redact(url)
    name = os.path.basename(urlsplit(url).path) or "download"
    fd, tmp = tempfile.mkstemp(prefix="dl-", suffix=f"-{_safe(name, 80)}", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=timeout) as resp:
            declared = int(resp.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise InputError(shown, f"download is {declared} bytes, over the {max_bytes} cap")
            _copy_capped(resp, fh, max_bytes, shown)
    except urllib.error.HTTPError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(shown, f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise InputError(shown, f"download failed: {reason}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _copy_capped(resp: Any, fh: BinaryIO, max_bytes: int, shown: str) -> None:
    total = 0
    while block := resp.read(_COPY_BLOCK):
        total += len(block)
        if total > max_bytes:
            raise InputError(shown, f"download is over the cap of {max_bytes} bytes")
        fh.write(block)
    if total == 0:
        raise InputError(shown, "download is empty (0 bytes)")


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


def video_id(path: str, *, name: str | None = None) -> str:
    """Stable for the same content; different for different content under the same name.
    `name` gives the stem for a downloaded file (the URL's file name)."""
    stem = _safe(Path(name or path).stem, 48) or "video"
    try:
        return f"{stem}-{fingerprint(path)[:12]}"
    except OSError:
        return f"{stem}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"


def _safe(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit]


def remove_quietly(path: str | None) -> None:
    """Delete a downloaded temporary file or folder; a missing one (or None) is fine."""
    if not path:
        return
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)
