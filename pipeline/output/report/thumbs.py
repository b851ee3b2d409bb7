"""Thumbnails at segment starts: small JPEGs cut from the source with ffmpeg (through
media.proc, the one place subprocesses run), a few inputs per ffmpeg, two ffmpegs at a time,
while the chart is drawn. A source that cannot be read gives no thumbnails, never an error."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.errors import FFmpegError
from pipeline.media import ffargs, proc

log = logging.getLogger(__name__)

PER_PROCESS = 6
PROCESSES = 2
TIMEOUT_S = 60


def thumbnails(source: Path, at_ms: Sequence[int], width: int = 160) -> dict[int, bytes]:
    """JPEG bytes by time (ms) for each time whose frame could be read."""
    groups = [list(at_ms[i:i + PER_PROCESS]) for i in range(0, len(at_ms), PER_PROCESS)]
    found: dict[int, bytes] = {}
    with ThreadPoolExecutor(PROCESSES, thread_name_prefix="thumbs") as pool:
        for got in pool.map(lambda g: _group(source, g, width), groups):
            found.update(got)
    return found


def _group(source: Path, at_ms: list[int], width: int) -> dict[int, bytes]:
    with tempfile.TemporaryDirectory(prefix="video-pipeline-thumbs-") as scratch:
        pattern = str(Path(scratch) / "thumb-%03d.jpg")
        argv = ffargs.thumbnails_argv(str(source), [ms / 1000 for ms in at_ms], pattern, width)
        try:
            proc.run(argv, timeout=TIMEOUT_S)
        except FFmpegError as exc:
            log.info("thumbnails from %s: %s", source, str(exc).splitlines()[0])
        out = {}
        for i, ms in enumerate(at_ms):
            jpeg = Path(pattern % i)
            if jpeg.is_file() and jpeg.stat().st_size:
                out[ms] = jpeg.read_bytes()
        return out
