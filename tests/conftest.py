"""Session fixtures: videos generated once per test session with the real ffmpeg."""

from __future__ import annotations

import functools
import http.server
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from media import ffmpeg, testsrc
from PIL import Image
from s3_support import MOTO_SERVER, Moto, start, stop

# Every test module's tier (pure or integration) is checked at collection, and a pure test that
# starts a process or uses the network fails: tests/tiers.py.
pytest_plugins = ["tiers"]

# `make mutation` (--hypothesis-profile=mutation): the same examples for every mutant, and no
# example database carried from one mutant to the next, so a score is reproducible.
settings.register_profile("mutation", derandomize=True, database=None)

# The settle rule (a file modified in the last few seconds is watched before it is taken) has
# its own tests, which set VIDEO_PIPELINE_SETTLE_SECONDS themselves (test_settle.py). Elsewhere
# every file is whole before a run starts, and waiting to see it still would only cost time.
os.environ.setdefault("VIDEO_PIPELINE_SETTLE_SECONDS", "0")
# Runs remember the rate they learned for a key (backends.rate_memory): the tests' runs do so
# in a folder of their own, never in the user's cache.
os.environ.setdefault("VIDEO_PIPELINE_CACHE_DIR", tempfile.mkdtemp(prefix="video-pipeline-cache-"))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def _cached(media_dir: Path, name: str, make: Callable[[Path], object]) -> Path:
    path = media_dir / name
    if not path.exists():
        make(path)
    return path


@pytest.fixture(scope="session")
def vbr_video(media_dir: Path) -> Path:
    """30 s, 320x240, 1 s GOPs; noisy for 3 s of every 6 s, so the bit rate swings ~10x."""
    return _cached(media_dir, "vbr.mp4", lambda p: testsrc(
        p, seconds=30, extra_vf="noise=alls=12:allf=t:enable='lt(mod(t,6),3)'", audio=True))


@pytest.fixture(scope="session")
def small_video(media_dir: Path) -> Path:
    """8 s, 160x120: fits every limit, sent whole."""
    return _cached(media_dir, "small.mp4", lambda p: testsrc(p, seconds=8, size="160x120"))


@pytest.fixture(scope="session")
def long_gop_video(media_dir: Path) -> Path:
    """12 s of noise at a high bit rate in ONE keyframe interval: no stream copy can fit 500 kB."""
    return _cached(media_dir, "longgop.mp4", lambda p: testsrc(
        p, seconds=12, extra_vf="noise=alls=50:allf=t", codec=[
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-g", "1000",
            "-keyint_min", "1000", "-sc_threshold", "0", "-pix_fmt", "yuv420p"]))


@pytest.fixture(scope="session")
def odd_videos(media_dir: Path) -> dict[str, Path]:
    """Containers and codecs that need care: AVI with MPEG-4 part 2 (msmpeg4v3) and Cinepak,
    audio as stream 0, rotation metadata, variable frame rate, MPEG-TS with a start offset,
    VP9 in WebM, H.264 in Matroska."""
    noisy = "noise=alls=30:allf=t"
    out = {
        "msmpeg4.avi": lambda p: testsrc(p, seconds=12, extra_vf=noisy,
                                         codec=["-c:v", "msmpeg4", "-q:v", "4", "-g", "60"]),
        "cinepak.avi": lambda p: testsrc(p, seconds=6, size="160x120",
                                         codec=["-c:v", "cinepak", "-g", "30"]),
        "vfr.mkv": lambda p: testsrc(
            p, seconds=12, extra_vf=f"{noisy},select='not(mod(n\\,3))+gt(n\\,150)'",
            out_args=["-fps_mode", "vfr"]),
        "offset.ts": lambda p: testsrc(p, seconds=12, extra_vf=noisy, audio=True,
                                       out_args=["-output_ts_offset", "7.5"]),
        "vp9.webm": lambda p: testsrc(p, seconds=8, extra_vf=noisy, codec=[
            "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
            "-g", "30"]),
        "h264.mkv": lambda p: testsrc(p, seconds=12, extra_vf=noisy),
    }
    videos = {name: _cached(media_dir, name, make) for name, make in out.items()}
    # ffmpeg 5.1 writes a display matrix from the rotate tag only when stream copying.
    videos["rotated.mp4"] = _cached(media_dir, "rotated.mp4", lambda p: ffmpeg(
        "-i", str(videos["h264.mkv"]), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(p)))
    videos["audio-first.mp4"] = _cached(media_dir, "audio-first.mp4", lambda p: ffmpeg(
        "-i", str(videos["h264.mkv"]), "-f", "lavfi", "-i", "sine=frequency=300",
        "-map", "1:a", "-map", "0:v", "-c:v", "copy", "-c:a", "aac", "-shortest", str(p)))
    return videos


@pytest.fixture(scope="session")
def twenty_second_chunks(media_dir: Path) -> Path:
    """A folder of three 20 s videos of 1 s keyframe intervals: 60 chunks at --max-seconds 1
    (the rate tests' many small requests)."""
    folder = media_dir / "rate-videos-20"
    folder.mkdir(exist_ok=True)
    for hue in (30, 150, 270):
        path = folder / f"v{hue}.mp4"
        if not path.exists():
            testsrc(path, seconds=20, size="160x120", rate=10, gop=10, extra_vf=f"hue=h={hue}")
    return folder


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's standalone S3 server on 127.0.0.1 for a test module (~0.3 s to start, ~80 MiB);
    one bucket per test."""
    server = start(MOTO_SERVER, tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    stop(server)


@pytest.fixture(scope="session")
def bad_inputs(media_dir: Path, vbr_video: Path) -> dict[str, Path]:
    """Inputs that must fail alone, each with a one-line reason."""
    bad = media_dir / "bad"
    bad.mkdir(exist_ok=True)
    empty = bad / "empty.mp4"
    empty.write_bytes(b"")
    text = bad / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = bad / "truncated.mp4"
    faststart = media_dir / "faststart.mp4"
    if not faststart.exists():
        ffmpeg("-i", str(vbr_video), "-c", "copy", "-movflags", "+faststart", str(faststart))
    truncated.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    audio = bad / "audio-only.mp4"
    if not audio.exists():
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:a", "aac", str(audio))
    empty_dir = bad / "no-videos"
    empty_dir.mkdir(exist_ok=True)
    (empty_dir / "readme.txt").write_text("nothing here")
    return {"missing": bad / "does-not-exist.mp4", "empty": empty, "text": text,
            "truncated": truncated, "audio": audio, "empty_dir": empty_dir}


@pytest.fixture(scope="session")
def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain HTTP server on 127.0.0.1 serving a folder: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start `video-pipeline serve` servers in process on free 127.0.0.1 ports, each with a
    request log in tmp_path and the test module's KEY; all stopped after the test."""
    from pipeline.serve.server import ServeConfig, Server

    started: list[Server] = []

    def start(**options: Any) -> Server:
        options.setdefault("request_log", str(tmp_path / f"requests-{len(started)}.jsonl"))
        options.setdefault("api_key", request.module.KEY)
        server = Server(ServeConfig(port=0, **options))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0)
