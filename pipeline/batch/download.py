"""URL sources: telling a URL from a path, showing it without secrets, streaming it to a file.

A URL's query string (a presigned signature), fragment and user:password never appear in a
message, summary.json or timeline.json: `pipeline.redact.url` is what is shown."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from pipeline.errors import InputError
from pipeline.redact import url as redact_url

_COPY_BLOCK = 1 << 20


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


def download(url: str, dest_dir: str, *, max_bytes: int, timeout: float) -> str:
    """Stream `url` to a file in `dest_dir` and return its path; raise InputError (naming the URL
    without its query string) on a failed or oversized download."""
    shown = redact_url(url)
    problem = url_problem(url)
    if problem:
        raise InputError(shown, problem)
    name = os.path.basename(urlsplit(url).path) or "download"
    fd, tmp = tempfile.mkstemp(prefix="dl-", suffix=f"-{safe_name(name, 80)}", dir=dest_dir)
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
        if isinstance(exc, InputError):
            raise
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
