"""Inputs: files, folders, manifests and URLs -> the deduplicated sources to process, in order.

Anything wrong with one input (a missing file, a manifest line that is not JSON, a NUL byte, a
URL with a password, a FIFO, a folder it may not read) becomes that source's `error`, so it
fails alone and the rest go on. Nothing but a regular file is ever opened: a FIFO blocks
whoever opens it until something writes to it.
`Source.path` is what the user gave (a path, or a URL with its query string); messages and
outputs use `Source.display`, which never holds a URL's query string or credentials."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.batch.download import is_url, url_problem
from pipeline.probe import not_regular
from pipeline.redact import url as redact_url

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
        return redact_url(self.path) if self.is_url else self.path


def expand(inputs: list[str], *, exclude: str | None = None) -> list[Source]:
    """Files as given, folders searched recursively for video files, manifests read line by line,
    URLs as given; duplicates (the same file or URL named twice, however reached) are dropped.
    Nothing under `exclude` (the run's own --out) is ever taken from a folder."""
    skip = os.path.realpath(exclude) if exclude else None
    seen: set[str] = set()
    out: list[Source] = []
    for item in inputs:
        for source in _expand_one(item, skip):
            key = source.path
            if source.error is None and not source.is_url:
                key = os.path.realpath(source.path)
            if key not in seen:
                seen.add(key)
                out.append(source)
    return out


def _expand_one(item: str, skip: str | None) -> list[Source]:
    if "\x00" in item:
        return [Source(item.replace("\x00", "\\0"), "the name holds a NUL byte")]
    if is_url(item):
        return [Source(item, url_problem(item))]
    path = Path(item)
    if path.is_dir():
        found = sorted(_walk(path, skip), key=lambda s: s.path)
        return found or [Source(item, "folder holds no video files")]
    odd = _odd_kind(path)
    if odd is not None:
        return [Source(item, f"not a regular file ({odd})")]
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        try:
            return _read_manifest(path)
        except (OSError, ValueError) as exc:
            return [Source(item, f"manifest is unreadable: {exc}")]
    return [Source(item)]


def _odd_kind(path: Path) -> str | None:
    """What `path` is when it is there but neither a regular file nor a folder ("a FIFO")."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # not there (or not reachable): probing it says which
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else not_regular(mode)


def _walk(folder: Path, skip: str | None) -> Iterator[Source]:
    """Video files under `folder`, never descending into `skip`; a folder that cannot be read,
    and anything named like a video that is not a regular file, as failed sources."""
    if skip and (os.path.realpath(folder) + os.sep).startswith(skip + os.sep):
        return
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=unreadable.append):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip]
        for name in files:
            found = _found(Path(root, name))
            if found is not None:
                yield found
    for error in unreadable:
        why = (error.strerror or str(error)).lower()
        yield Source(str(error.filename or folder), f"cannot read folder: {why}")


def _found(path: Path) -> Source | None:
    """`path`, found in a folder, as a source if it is a video; a named video that is not a
    regular file fails as what it is; nothing else is opened."""
    odd = _odd_kind(path)
    if odd is not None:
        return (Source(str(path), f"not a regular file ({odd})")
                if path.suffix.lower() in VIDEO_EXTENSIONS else None)
    return Source(str(path)) if _looks_like_video(path) else None


def _looks_like_video(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix or path.name.startswith("."):
        return False
    try:
        # Non-blocking: were it swapped for a FIFO since it was looked at, open would wait.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return False
            head = fh.read(400)
    except OSError:
        return False
    return any(head[at:at + len(magic)] == magic for at, magic in _MAGIC) or _is_mpegts(head)


def _is_mpegts(head: bytes) -> bool:
    """MPEG-TS: a 0x47 sync byte every 188 bytes."""
    return len(head) > 376 and head[0] == head[188] == head[376] == 0x47


def _read_manifest(path: Path) -> list[Source]:
    # utf-8-sig: Excel's "CSV UTF-8" (and Notepad) start the file with a byte-order mark.
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    suffix = path.suffix.lower()
    entries = (_csv_entries(text) if suffix == ".csv" else _jsonl_entries(text)
               if suffix == ".jsonl" else _txt_entries(text))
    out = [_entry_source(number, entry, path) for number, entry in entries]
    return out or [Source(str(path), "manifest lists no inputs")]


def _entry_source(number: int, entry: str | Exception, manifest: Path) -> Source:
    """One manifest entry as a source; a bad entry fails alone, named by its line."""
    where = f"{manifest} line {number}"
    if isinstance(entry, Exception):
        return Source(where, str(entry))
    if "\x00" in entry:
        return Source(where, "holds a NUL byte")
    if is_url(entry):
        return Source(entry, url_problem(entry))
    resolved = entry if "://" in entry or os.path.isabs(entry) else str(manifest.parent / entry)
    return Source(resolved)


def _txt_entries(text: str) -> list[tuple[int, str | Exception]]:
    lines = ((n, line.strip()) for n, line in enumerate(text.splitlines(), 1))
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def _csv_entries(text: str) -> list[tuple[int, str | Exception]]:
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    if not header:
        return []
    column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    if column is None:
        raise ValueError(f"no column named {' or '.join(PATH_COLUMNS)} in the header row")
    out: list[tuple[int, str | Exception]] = []
    for row in reader:
        cell = row[column].strip() if len(row) > column else ""
        if cell and not cell.startswith("#"):
            out.append((reader.line_num, cell))
    return out


def _jsonl_entries(text: str) -> list[tuple[int, str | Exception]]:
    out: list[tuple[int, str | Exception]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append((number, _jsonl_value(line)))
    return out


def _jsonl_value(line: str) -> str | Exception:
    try:
        value = json.loads(line)
    except ValueError as exc:
        return ValueError(f"not valid JSON ({exc})")
    if isinstance(value, dict):
        value = next((value[c] for c in PATH_COLUMNS if isinstance(value.get(c), str)), None)
    if not isinstance(value, str):
        return ValueError(f"has no {'/'.join(PATH_COLUMNS)} string")
    return value
