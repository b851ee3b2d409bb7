"""Files on disk: atomic writes (temporary file, fsync, rename) that honour the umask."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

_umask: int | None = None
_umask_lock = threading.Lock()


def file_mode() -> int:
    """The mode a new file gets from open(): 0666 less the process umask (read once)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = _read_umask()
        return 0o666 & ~_umask


def _read_umask() -> int:
    """Linux shows the umask in /proc without changing it; elsewhere set and restore it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` so that a reader sees the old file or the whole new one, never a part."""
    atomic_write_lines(path, (text,))


def atomic_write_lines(path: str | Path, pieces: Iterable[str]) -> None:
    """Write the pieces one after another (streamed: a long export is never held whole) into
    a temporary file beside `path`, then rename it over `path`."""
    _atomic_write(path, "w", pieces)


def _atomic_write(path: str | Path, mode: str, pieces: Iterable[str] | Iterable[bytes]) -> None:
    """mkstemp makes the file 0600; results are shared by teams and Dask workers, so it gets
    the umask's mode instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # Any: open()'s keywords are of several types
    text: dict[str, Any] = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
    try:
        with os.fdopen(fd, mode, **text) as fh:
            for piece in pieces:
                fh.write(piece)
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: object) -> None:
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


def prepare_out(out: str | Path) -> Path:
    """--out made and proven writable, or a ConfigError that says why not (exit 2)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    probe_file = path / f".write-check-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Like atomic_write_text, for bytes (a PNG)."""
    _atomic_write(path, "wb", (data,))
