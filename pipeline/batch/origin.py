"""Where one video comes from, and how its chunks travel: a local file, or a URL source
resolved without downloading; identified (VIDEO_ID), probed, and given a sender: by reference
(a URL source that fits as it is, copied), staged (URL mode), or as bytes."""

from __future__ import annotations

import logging
import tempfile
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
from pipeline.send.media import ChunkMedia
from pipeline.send.senders import BytesSender, Opens, ReferenceSender, Sender, StagingSender
from pipeline.types import VideoInfo

log = logging.getLogger(__name__)


class Origin:
    """One source's identity, probe and sender; `release` removes what it downloaded."""

    def __init__(self, source: Source, ctx: Context) -> None:
        self.source = source
        self.ctx = ctx
        self.shown = source.display
        self.sender: Sender = BytesSender(ChunkMedia(None))
        self._remote: Remote | None = None
        self._video_id = ""
        self._download: str | None = None  # the temporary folder of a URL source
        self._fetched: str | None = None  # its download, in that folder

    def identify(self) -> str:
        """The VIDEO_ID: from the file's content, or a URL source's size and version (its
        content, downloaded, when its server declares no size)."""
        self._remote = remote = self._resolve()
        return self._identify(remote)

    def probe(self, video_id: str) -> VideoInfo:
        self._video_id = video_id
        return self._probe(self._remote, video_id)

    def carry(self, media: Opens) -> None:
        """The chunks `media` opens (the strategy's) travel as the probe decided: staged (URL
        mode) or as bytes; a source sent by reference stays so. A frames batch's images always
        go as bytes (~20 KB each, a few MB a request)."""
        if isinstance(self.sender, ReferenceSender):
            return
        self.sender = self._sender(media)

    def _sender(self, media: Opens) -> Sender:
        settings = self.ctx.settings
        if settings.sends_urls and self.ctx.stager is not None:
            return StagingSender(media, self.ctx.stager, self.ctx.staging_folder(self._video_id),
                                 self.ctx.lifetime, keep=settings.keep_staged)
        return BytesSender(media)

    def release(self) -> None:
        download.remove_quietly(self._download)
        self._download = self._fetched = None

    def _resolve(self) -> Remote | None:
        """A URL source's size and version (no download); None for a local file."""
        if not self.source.is_url:
            return None
        settings = self.ctx.settings
        return remote_source.resolve(self.source.path, endpoint_url=settings.s3_endpoint_url,
                                     timeout=settings.download_timeout,
                                     min_rate=settings.download_min_rate, stop=self.ctx.stop)

    def _identify(self, remote: Remote | None) -> str:
        if remote is not None:
            if remote.size is None:  # no size, so no version to trust: its content it is
                return identity.content_id(remote.file_name, self._fetch(remote))
            where = None if remote.name else remote.shown
            return identity.remote_id(remote.file_name, remote.size, remote.version,
                                      where=where)
        if not Path(self.source.path).is_file():
            probe(self.source.path, scan=False)  # raises the InputError that says what is wrong
        return identity.video_id(self.source.path)

    def _probe(self, remote: Remote | None, video_id: str) -> VideoInfo:
        """The source probed, and how its chunks travel: a URL source that fits as it is goes
        by reference; anything else is cut here (a URL source downloaded once) and sent as
        bytes, or staged (URL mode)."""
        settings = self.ctx.settings
        if remote is not None and settings.sends_urls and settings.strategy == "copy":
            info = self._by_reference(remote)
            if info is not None:
                self.sender = ReferenceSender(remote.reference, self.ctx.lifetime, remote.shown)
                return info
            if self.ctx.stager is None:
                raise InputError(self.shown, "does not fit the URL limits as it is (an MP4 or "
                                 "MOV within them), and --mode url has no --stage to put its "
                                 "chunks in")
        local = self._fetch(remote) if remote is not None else self.source.path
        info = probe(local, keep_audio=settings.keep_audio)
        self.sender = self._sender(ChunkMedia(info.table))
        return info

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
                    self._download, max_bytes=self.ctx.settings.download_max_bytes)
            except BaseException:
                self.release()
                raise
        return self._fetched
