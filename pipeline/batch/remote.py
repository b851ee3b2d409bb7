"""URL sources (http(s):// and s3://bucket/key): what they are without downloading them (size,
version, a VideoInfo from ranged reads of an MP4's boxes), a URL to send one by reference, and
the one download a source that must be cut needs.

An object in storage is read with the run's S3 client (credentials from the standard AWS
settings); an http(s) URL with plain GETs (a presigned URL signs GET only, so never HEAD). No
message shows a URL's query string."""

from __future__ import annotations

import functools
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import redact
from pipeline.batch import download
from pipeline.errors import InputError
from pipeline.media.ranges import RangeFile, open_ranges
from pipeline.probe import probe_mp4
from pipeline.send import s3
from pipeline.send.s3 import S3Name
from pipeline.send.stage import presign
from pipeline.types import VideoInfo

_TOTAL = re.compile(r"/(\d+)\s*$")


@dataclass
class Remote:
    """One URL source, resolved: its size and version (ETag, or Last-Modified), read once."""

    url: str  # as given (an http URL keeps its query string: it may be what lets us in)
    shown: str
    size: int
    version: str
    client: Any = None  # the S3 client, for s3:// sources
    ranges: RangeFile | None = None  # the last ranged reader, for its byte count

    @functools.cached_property
    def name(self) -> S3Name | None:
        """The object's bucket and key, for an s3:// source (parsed once)."""
        return S3Name.parse(self.url, "an s3:// input") if download.is_s3(self.url) else None

    @property
    def file_name(self) -> str:
        path = self.url[5:] if self.name else redact.url(self.url)
        return path.rstrip("/").rsplit("/", 1)[-1] or "video"

    @property
    def read_bytes(self) -> int:
        return self.ranges.fetched if self.ranges is not None else 0

    def probe(self) -> VideoInfo | None:
        """The source's VideoInfo from ranged reads of its MP4 boxes; None if it is not an MP4
        this can read that way (or the server does not take ranges)."""
        fh, self.ranges = open_ranges(self._fetch, self.size)
        try:
            return probe_mp4(fh, self.size, self.shown)
        except _NoRanges:
            return None

    def reference(self, seconds: float) -> str:
        """The URL the API fetches the source from: a fresh presigned URL of the object, or
        the http(s) URL as given."""
        name = self.name
        return presign(self.client, name, seconds) if name else self.url

    def fetch_to(self, folder: str, *, max_bytes: int, timeout: float) -> str:
        """Stream the whole source to a file in `folder` (once); its path."""
        name = self.name
        if name is None:
            return download.download(self.url, folder, max_bytes=max_bytes, timeout=timeout)
        if self.size > max_bytes:
            raise InputError(self.shown, f"download is {self.size} bytes, over the {max_bytes} "
                                         "cap")
        fd, path = tempfile.mkstemp(prefix="dl-", dir=folder,
                                    suffix=f"-{download.safe_name(self.file_name, 80)}")
        os.close(fd)
        try:
            self.client.download_file(name.bucket, name.key, path)
        except Exception as exc:
            Path(path).unlink(missing_ok=True)
            raise InputError(self.shown, s3.failure(exc, "cannot download", name)) from None
        return path

    def _fetch(self, start: int, end: int) -> bytes:
        name = self.name
        try:
            if name is not None:
                return bytes(self.client.get_object(
                    Bucket=name.bucket, Key=name.key, Range=f"bytes={start}-{end}",
                    IfMatch=self.version)["Body"].read())
            return _http_range(self.url, start, end)
        except _NoRanges:
            raise
        except Exception as exc:
            why = s3.failure(exc, "cannot read", name) if name else f"cannot read it: {exc}"
            raise InputError(self.shown, redact.text(why)) from None


class _NoRanges(Exception):
    """The server answered a ranged GET with the whole body."""


def resolve(url: str, *, endpoint_url: str | None, timeout: float) -> Remote:
    """Size and version of a URL source, without its content: HEAD of an object in storage,
    or a GET of its first byte."""
    shown = redact.url(url)
    if download.is_s3(url):
        name = S3Name.parse(url, "an s3:// input")
        client = s3.client(endpoint_url)
        try:
            head = client.head_object(Bucket=name.bucket, Key=name.key)
        except Exception as exc:
            raise InputError(shown, s3.failure(exc, "cannot read", name)) from None
        return Remote(url, shown, int(head["ContentLength"]), str(head["ETag"]), client)
    problem = download.url_problem(url)
    if problem:
        raise InputError(shown, problem)
    size, version = _http_head(url, shown, timeout)
    return Remote(url, shown, size, version)


def _http_head(url: str, shown: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            total = _TOTAL.search(resp.headers.get("Content-Range") or "")
            size = int(total.group(1)) if total else int(resp.headers.get("Content-Length") or 0)
            version = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            raise InputError(shown, "download is empty (0 bytes)") from None
        raise InputError(shown, f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise InputError(shown, redact.text(f"download failed: {reason}")) from None
    if size == 0:
        raise InputError(shown, "download is empty (0 bytes)")
    return size, version


def _http_range(url: str, start: int, end: int) -> bytes:
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        if resp.status != 206:
            raise _NoRanges()
        return bytes(resp.read())

