"""Where one video comes from: a local file, or a URL source resolved without downloading;
identified (VIDEO_ID), probed, and, once its chunks are prepared, given its transport: by
reference (a URL source that fits as it is, under a strategy that may send it so), staged (URL
mode), or as bytes. The transport is decided once, here."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline import segment
from pipeline.batch import download, identity
from pipeline.batch import remote as remote_source
from pipeline.batch.context import Context
from pipeline.batch.inputs import Source
from pipeline.batch.remote import Remote
from pipeline.batch.stopping import StopFlag
from pipeline.errors import InputError
from pipeline.probe import probe
from pipeline.send.strategy import PreparedChunks, Travel
from pipeline.send.transport import (
    BytesTransport,
    ReferenceTransport,
    StagingTransport,
    Transport,
)
from pipeline.types import VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probed:
    """A source probed: what it holds, and, when it is sent as it is, its own URL's transport."""

    info: VideoInfo
    by_reference: ReferenceTransport | None = None


class Origin:
    """One source's identity and probe; `release` removes what it downloaded."""

    def __init__(self, source: Source, ctx: Context) -> None:
        self.source = source
        self.ctx = ctx
        self.shown = source.display
        self._remote: Remote | None = None
        self._download: str | None = None  # the temporary folder of a URL source
        self._fetched: str | None = None  # its download, in that folder

    def identify(self) -> str:
        """The VIDEO_ID: from the file's content, or a URL source's size and version (its
        content, downloaded, when its server declares no size)."""
        self._remote = remote = self._resolve()
        if remote is not None:
            if remote.size is None:  # no size, so no version to trust: its content it is
                return identity.content_id(remote.file_name, self._fetch(remote))
            where = None if remote.name else remote.shown
            return identity.remote_id(remote.file_name, remote.size, remote.version,
                                      where=where)
        if not Path(self.source.path).is_file():
            probe(self.source.path, scan=False)  # raises the InputError that says what is wrong
        return identity.video_id(self.source.path)

    def probe(self) -> Probed:
        """The source probed: a URL source that fits as it is, by ranged reads of its index,
        when it may go by reference; anything else where it lies (a URL source downloaded
        once)."""
        remote, settings = self._remote, self.ctx.settings
        if remote is not None and settings.sends_urls and \
                settings.strategy.travel is Travel.BY_REFERENCE:
            info = self._by_reference(remote)
            if info is not None:
                return Probed(info, ReferenceTransport(remote.reference, self.ctx.lifetime,
                                                       remote.shown))
            if self.ctx.stager is None:
                raise InputError(self.shown, "does not fit the URL limits as it is (an MP4 or "
                                 "MOV within them), and --mode url has no --stage to put its "
                                 "chunks in")
        local = self._fetch(remote) if remote is not None else self.source.path
        return Probed(probe(local, keep_audio=settings.strategy.keeps_audio))

    def transport(self, probed: Probed, chunks: PreparedChunks, video_id: str) -> Transport:
        """How the video's chunks travel: by reference as probed; staged (URL mode, for a
        strategy whose chunks may be staged: videos made here); else as bytes."""
        if probed.by_reference is not None:
            return probed.by_reference
        stager = self.ctx.stager
        if self.ctx.settings.sends_urls and stager is not None:
            return StagingTransport(chunks, stager, self.ctx.staging_folder(video_id),
                                    self.ctx.lifetime, keep=self.ctx.settings.staging.keep)
        return BytesTransport(chunks)

    def sweep_staged(self, video_id: str) -> None:
        """Remove what a run that crashed (or a delete that failed) left staged for this
        video."""
        stager = self.ctx.stager
        if stager is None or self.ctx.settings.staging.keep or not self.ctx.settings.sends_urls:
            return
        removed = stager.clear(self.ctx.staging_folder(video_id))
        if removed:
            log.info("removed %d staged chunk(s) left for %s", removed, self.shown)

    def release(self) -> None:
        download.remove_quietly(self._download)
        self._download = self._fetched = None

    def _resolve(self) -> Remote | None:
        """A URL source's size and version (no download); None for a local file."""
        if not self.source.is_url:
            return None
        settings = self.ctx.settings
        return remote_source.resolve(self.source.path,
                                     endpoint_url=settings.staging.endpoint_url,
                                     timeout=settings.downloads.timeout,
                                     min_rate=settings.downloads.min_rate, stop=self.ctx.stop)

    def _by_reference(self, remote: Remote) -> VideoInfo | None:
        """The source's VideoInfo if it can be sent as it is (read from its MP4 index by ranged
        reads); None if it must be cut."""
        limits = self.ctx.key.limits
        if remote.size is None or remote.size > limits.max_bytes:
            return None
        info = remote.probe()
        log.debug("%s: probed by ranged reads (%d bytes)", self.shown, remote.read_bytes)
        if info is None or not segment.fits_whole(info, limits) or not segment.copyable(info):
            return None
        return info

    def _fetch(self, remote: Remote) -> str:
        """The whole URL source, streamed once to a temporary folder (gone if that fails)."""
        if self._fetched is None:
            self._download = folder = tempfile.mkdtemp(prefix="video-pipeline-dl-")
            if isinstance(self.ctx.stop, StopFlag):  # gone even if the process must end at once
                self.ctx.stop.before_forced_exit(lambda: download.remove_quietly(folder))
            try:
                self._fetched = remote.fetch_to(
                    self._download, max_bytes=self.ctx.settings.downloads.max_bytes)
            except BaseException:
                self.release()
                raise
        return self._fetched

