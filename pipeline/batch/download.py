"""URL sources: telling a URL from a path, showing it without secrets, streaming it to a file
within its limits (`transfer`: stalls, a deadline by size, the stop flag, the declared size).

A URL's query string (a presigned signature), fragment and user:password never appear in a
message, summary.json or timeline.json: `pipeline.redact.url` is what is shown."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pipeline.batch.stopping import StopCheck
from pipeline.batch.transfer import MIN_RATE, Pace, Watch, declared_size, open_http, pump
from pipeline.errors import InputError
from pipeline.redact import url as redact_url


def is_url(text: str) -> bool:
    """An http(s) URL, or an object in S3-compatible storage (s3://bucket/key)."""
    return text.lower().startswith(("http://", "https://", "s3://"))


def is_s3(text: str) -> bool:
    return text.lower().startswith("s3://")


def url_problem(url: str) -> str | None:
    """Why a URL cannot be fetched as given (said before any network access), or None."""
    if is_s3(url):
        bucket, _, key = url[5:].partition("/")
        if not bucket or not key or "@" in bucket:
            return "an object in storage is named s3://BUCKET/KEY"
        return None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return ("the URL carries a user name or password (user:password@host), which would be "
                "shown in logs; use a presigned URL or a token in the query string instead")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in 0..65535)
    except ValueError:
        return "the URL's port is not a number between 0 and 65535"
    if not parts.hostname:
        return "the URL has no host name"
    return None


def download(url: str, dest_dir: str, *, max_bytes: int, timeout: float,
             min_rate: float = MIN_RATE, stop: StopCheck | None = None) -> str:
    """Stream `url` to a file in `dest_dir` and return its path. Raise InputError (naming the
    URL without its query string) on a download that fails, stalls for `timeout` seconds,
    takes longer than `timeout` plus its size at `min_rate` bytes a second, ends short of its
    declared size or is over `max_bytes`; Interrupted once `stop` is set. The file is removed
    then."""
    shown = redact_url(url)
    problem = url_problem(url)
    if problem:
        raise InputError(shown, problem)
    pace = Pace(timeout, min_rate, stop)
    name = os.path.basename(urlsplit(url).path) or "download"
    return into_file(dest_dir, name, lambda fh: _get(url, fh, pace, shown, max_bytes))


def _get(url: str, fh: BinaryIO, pace: Pace, shown: str, max_bytes: int) -> None:
    with Watch(pace, shown) as watch, open_http(url, watch) as resp:
        watch.declared = declared_size(resp)
        if watch.declared is not None and watch.declared > max_bytes:
            raise InputError(shown, f"download is {watch.declared} bytes, over the {max_bytes} "
                                    "cap")
        pump(resp.read1, fh.write, watch, cap=max_bytes)
    if watch.received == 0:
        raise InputError(shown, "download is empty (0 bytes)")


def into_file(dest_dir: str, name: str, fill: Callable[[BinaryIO], None]) -> str:
    """A new file in `dest_dir` (its name ending in `name`, made safe) that `fill` writes; the
    file is removed if `fill` raises anything, a stop included."""
    fd, tmp = tempfile.mkstemp(prefix="dl-", suffix=f"-{safe_name(name, 80)}", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def safe_name(text: str, limit: int) -> str:
    """`text` reduced to letters, digits, dot, dash and underscore (for file and folder names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit]


def remove_quietly(path: str | None) -> None:
    """Delete a downloaded temporary file or folder; a missing one (or None) is fine."""
    if not path:
        return
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)
