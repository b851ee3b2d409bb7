"""URL sources (http(s):// and s3://bucket/key): what they are without downloading them (size,
version, a VideoInfo from ranged reads of an MP4's boxes), a URL to send one by reference, and
the one download a source that must be cut needs.

An object in storage is read with the run's S3 client (credentials from the standard AWS
settings); an http(s) URL with plain GETs (a presigned URL signs GET only, so never HEAD). No
message shows a URL's query string."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline import redact
from pipeline.batch import download
from pipeline.batch.stopping import StopCheck
from pipeline.batch.transfer import MIN_RATE, Pace, Watch, declared_size, open_http, pump
from pipeline.errors import DownloadIncomplete, InputError
from pipeline.media.ranges import RangeFile, open_ranges
from pipeline.probe import probe_mp4
from pipeline.send import s3
from pipeline.send.stage import presign
from pipeline.types import S3Name, VideoInfo

log = logging.getLogger(__name__)

_TOTAL = re.compile(r"/(\d+)\s*$")
_RESUMES = 5  # an object's body cut short: asked for the rest this many times at most


@dataclass
class Remote:
    """One URL source, resolved: its size and version (ETag, or Last-Modified), read once."""

    url: str  # as given (an http URL keeps its query string: it may be what lets us in)
    shown: str
    size: int | None  # None: the server declares none (it answers chunked)
    version: str
    pace: Pace = Pace()  # every read's limits: the run's settings and its stop flag
    client: s3.Client | None = None  # the S3 client, for s3:// sources
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
        this can read that way (or the server does not take ranges, or gives no size)."""
        if self.size is None:
            return None
        fh, self.ranges = open_ranges(self._fetch, self.size)
        try:
            return probe_mp4(fh, self.size, self.shown)
        except _NoRanges:
            return None

    def reference(self, seconds: float) -> str:
        """The URL the API fetches the source from: a fresh presigned URL of the object, or
        the http(s) URL as given."""
        name = self.name
        return presign(self._s3, name, seconds) if name else self.url

    def fetch_to(self, folder: str, *, max_bytes: int) -> str:
        """Stream the whole source to a file in `folder` (once); its path."""
        name, size, pace = self.name, self.size, self.pace
        if name is None or size is None:
            return download.download(self.url, folder, max_bytes=max_bytes, timeout=pace.stall,
                                     min_rate=pace.min_rate, stop=pace.stop)
        if size > max_bytes:
            raise InputError(self.shown, f"download is {size} bytes, over the {max_bytes} cap")
        return download.into_file(folder, self.file_name,
                                  lambda fh: self._s3_read(name, 0, size - 1, fh.write))

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes start..end, held to the same limits as a whole download."""
        got = bytearray()
        name = self.name
        if name is not None:
            self._s3_read(name, start, end, got.extend)
        else:
            _http_range(self.url, start, end, Watch(self.pace, self.shown, end - start + 1),
                        got.extend)
        return bytes(got)

    def _s3_read(self, name: S3Name, start: int, end: int,
                 write: Callable[[bytes], object]) -> None:
        """Bytes start..end of the object through `write`. A body that ends early is asked for
        again from where it stopped (storage takes ranges, as s3transfer does), while each
        asking brings more, at most _RESUMES times; all within one deadline."""
        with Watch(self.pace, self.shown, end - start + 1) as watch:
            for resumed in range(_RESUMES + 1):
                before = watch.received
                try:
                    self._s3_body(name, start + before, end, write, watch)
                    return
                except DownloadIncomplete:
                    if resumed == _RESUMES or watch.received == before:
                        raise
                log.debug("%s: ended at byte %d of %d; asking for the rest", self.shown,
                          start + watch.received, end + 1)

    def _s3_body(self, name: S3Name, start: int, end: int, write: Callable[[bytes], object],
                 watch: Watch) -> None:
        whole = start == 0 and end + 1 == self.size
        ranged = {} if whole else {"Range": f"bytes={start}-{end}"}
        try:
            got = self._s3.get_object(Bucket=name.bucket, Key=name.key, IfMatch=self.version,
                                      **ranged)
        except s3.ERRORS as exc:
            raise watch.ended(exc) or InputError(
                self.shown, s3.failure(exc, "cannot read", name)) from exc
        body = got["Body"]
        try:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                # botocore keeps the urllib3 response there (it reaches in itself, to set the
                # socket's timeout); without it, stops and deadlines wait for the next block
                watch.attach(body._raw_stream.fileno())
            # the watch counts the bytes of every asking together
            pump(body.read, write, watch, cap=watch.received + end - start + 1)
        finally:
            watch.detach()  # before the connection can go back to botocore's pool
            body.close()

    @property
    def _s3(self) -> s3.Client:
        assert self.client is not None, "an s3:// source is resolved with its client"
        return self.client


class _NoRanges(Exception):
    """The server answered a ranged GET with the whole body."""


def resolve(url: str, *, endpoint_url: str | None, timeout: float,
            min_rate: float = MIN_RATE, stop: StopCheck | None = None) -> Remote:
    """Size and version of a URL source, without its content: HEAD of an object in storage,
    or a GET of its first byte (whose answer is closed unread: a server that ignores Range
    sends the whole body). Every later read of it is held to `timeout` without a byte,
    `timeout` plus its size at `min_rate` bytes a second overall, and `stop`."""
    shown = redact.url(url)
    pace = Pace(timeout, min_rate, stop)
    client: s3.Client | None = None
    size: int | None
    if download.is_s3(url):
        client = s3.client(endpoint_url, timeout=timeout)
        size, version = _s3_head(client, url, shown)
    else:
        problem = download.url_problem(url)
        if problem:
            raise InputError(shown, problem)
        size, version = _http_head(url, shown, pace)
    if size == 0:
        raise InputError(shown, "download is empty (0 bytes)")
    return Remote(url, shown, size, version, pace, client)


def _s3_head(client: s3.Client, url: str, shown: str) -> tuple[int, str]:
    name = S3Name.parse(url, "an s3:// input")
    try:
        head = client.head_object(Bucket=name.bucket, Key=name.key)
    except s3.ERRORS as exc:
        raise InputError(shown, s3.failure(exc, "cannot read", name)) from exc
    return int(head["ContentLength"]), str(head["ETag"])


def _http_head(url: str, shown: str, pace: Pace) -> tuple[int | None, str]:
    with Watch(pace, shown) as watch, open_http(url, watch, {"Range": "bytes=0-0"}) as resp:
        if resp.status == 206:
            total = _TOTAL.search(resp.headers.get("Content-Range") or "")
            size = int(total.group(1)) if total else None
        else:
            size = declared_size(resp)
        return size, resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""


def _http_range(url: str, start: int, end: int, watch: Watch,
                write: Callable[[bytes], object]) -> None:
    with watch, open_http(url, watch, {"Range": f"bytes={start}-{end}"}) as resp:
        if resp.status != 206:
            raise _NoRanges()
        watch.declared = declared_size(resp) or end - start + 1
        pump(resp.read1, write, watch, cap=end - start + 1)
