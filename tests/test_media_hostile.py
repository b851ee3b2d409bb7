"""Media files built to hurt: crafted MP4 indexes, text that names other files, streams that
never end, cut-short transport streams. Each fails alone in one line, in bounded memory and
bounded time; nothing waits forever and no child process outlives the run."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import media
import pytest
from batch_support import REPO, run_cli, summary
from hostile_support import (
    MDHD,
    STBL,
    last_line,
    measured_cli,
    patch,
    replace,
    top_box_offset,
    write,
)

from pipeline.errors import FFmpegError, InputError
from pipeline.media import decode, proc
from pipeline.probe import ffprobe_argv, probe
from pipeline.sampling import Grid

pytestmark = pytest.mark.integration

MAX_PEAK_MB = 400


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 1.7 KB MP4: 64x64 gray, 2 frames a second for 3 s, its moov last."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:r=2", "-t", "3", "-c:v", "libx264",
                 "-pix_fmt", "yuv420p", str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def twenty_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 20 s MP4, 160x120 at 30 frames a second (600 frames), its moov last."""
    path = tmp_path_factory.mktemp("twenty") / "twenty.mp4"
    media.testsrc(path, seconds=20, size="160x120")
    return path.read_bytes()


@pytest.fixture
def deadlines() -> Iterator[Callable[..., None]]:
    """Set proc's deadlines for one test; the defaults are back afterwards."""
    yield lambda **kw: proc.configure(proc.Deadlines(**kw))
    proc.configure(proc.Deadlines())


def _samples_claimed(tiny: bytes, count: int) -> bytes:
    """`tiny` whose stsz claims `count` samples of 512 bytes, and whose stts covers them."""
    data = patch(tiny, (*STBL, b"stsz"), 4, ">II", 512, count)
    return patch(data, (*STBL, b"stts"), 4, ">III", 1, count, 512)


def _assert_damaged_in_bounds(video: Path, tmp_path: Path) -> None:
    """`probe` and `run` on `video`: one line saying "damaged index", exit 1, the run's summary
    names it, and no process of either took MAX_PEAK_MB."""
    probed = measured_cli("probe", str(video))
    line = last_line(probed.stderr)
    assert probed.returncode == 1 and "damaged index: " in line, probed.stderr
    assert "internal error" not in probed.stderr and "Traceback" not in probed.stderr
    out = tmp_path / f"out-{video.stem}"
    ran = measured_cli("run", str(video), "--out", str(out), "--no-progress")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["status"] == "failed" and "damaged index: " in entry["error"], entry
    assert "\n" not in entry["error"]
    assert probed.peak_mb < MAX_PEAK_MB and ran.peak_mb < MAX_PEAK_MB, (probed.peak_mb,
                                                                       ran.peak_mb)


@pytest.mark.parametrize("count", [30_000_000, 2**32 - 1])
def test_an_stsz_claiming_millions_of_samples_is_a_damaged_index_in_bounded_memory(
        tiny_mp4: bytes, tmp_path: Path, count: int) -> None:
    """A 1.7 KB MP4 whose stsz claims 30 million (or 2^32-1) samples of 512 bytes: "damaged
    index", checked before anything (ffprobe included) allocates for them."""
    video = write(tmp_path / "claims.mp4", _samples_claimed(tiny_mp4, count))
    _assert_damaged_in_bounds(video, tmp_path)


def test_an_stsz_whose_table_is_shorter_than_its_count_is_a_damaged_index(
        tiny_mp4: bytes, tmp_path: Path) -> None:
    """An stsz with a per-sample table claiming 30 million entries in a box of a few bytes."""
    data = patch(tiny_mp4, (*STBL, b"stsz"), 4, ">II", 0, 30_000_000)
    video = write(tmp_path / "short-table.mp4", data)
    with pytest.raises(InputError, match="damaged index: .*stsz"):
        probe(str(video))


def test_a_zero_timescale_is_a_damaged_index(tiny_mp4: bytes, tmp_path: Path) -> None:
    """mdhd timescale 0 (once a ZeroDivisionError): "damaged index", one line."""
    video = write(tmp_path / "timescale0.mp4", patch(tiny_mp4, MDHD, 12, ">I", 0))
    _assert_damaged_in_bounds(video, tmp_path)


def test_frame_times_past_the_stated_duration_are_a_damaged_index(
        twenty_mp4: bytes, tmp_path: Path) -> None:
    """A 20 s video whose last stts delta is 2^32-1 (a frame 97 hours in): "damaged index",
    never "done" with a frame at 349,525,000 ms."""
    stts = struct.pack(">IIIIII", 0, 2, 599, 512, 1, 2**32 - 1)
    video = write(tmp_path / "late.mp4", replace(twenty_mp4, (*STBL, b"stts"), stts))
    _assert_damaged_in_bounds(video, tmp_path)


def test_frames_sharing_one_time_are_a_damaged_index(twenty_mp4: bytes, tmp_path: Path) -> None:
    """Every stts delta 0 (600 frames at one instant): "damaged index", never a one-frame
    "done"."""
    video = write(tmp_path / "still.mp4", patch(twenty_mp4, (*STBL, b"stts"), 4, ">III", 1,
                                                600, 0))
    _assert_damaged_in_bounds(video, tmp_path)


def test_a_moov_running_to_the_end_of_a_2_gb_sparse_file_is_read_in_bounded_memory(
        twenty_mp4: bytes, tmp_path: Path) -> None:
    """moov of size 0 ("to the end of the file") in a 2 GB file of zeros after the real index:
    the index is read up to where its boxes end (ffprobe reads it the same way), never the
    2 GB; probed as the 20 s video it is, and done."""
    data = bytearray(twenty_mp4)
    struct.pack_into(">I", data, top_box_offset(twenty_mp4, b"moov"), 0)
    video = write(tmp_path / "sparse.mp4", bytes(data))
    os.truncate(video, 2 * 1024**3)
    probed = measured_cli("probe", str(video), "--json")
    assert probed.returncode == 0, probed.stderr
    found = json.loads(probed.stdout)
    assert (found["duration_ms"], found["video_frames"]) == (20_000, 600)
    out = tmp_path / "out"
    ran = measured_cli("run", str(video), "--out", str(out), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert [e["status"] for e in summary(out)["inputs"]] == ["done"]
    assert probed.peak_mb < MAX_PEAK_MB and ran.peak_mb < MAX_PEAK_MB, (probed.peak_mb,
                                                                       ran.peak_mb)


# -- text that names other files -------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    """Serves one MPEG-TS segment at any path and records every request."""

    segment = b""
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.segment)))
        self.end_headers()
        self.wfile.write(self.segment)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving a 2 s MPEG-TS segment: (base URL, requests)."""
    segment = media.testsrc(tmp_path / "seg.ts", seconds=2, size="160x120")

    class Handler(_Recorder):
        pass

    Handler.segment, Handler.seen = segment.read_bytes(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Handler.seen
    httpd.shutdown()
    httpd.server_close()


def _playlist(url: str) -> str:
    return (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{url}/seg.ts\n"
            "#EXT-X-ENDLIST\n")


def test_an_hls_playlist_named_mp4_is_refused_before_anything_fetches_it(
        recorder: tuple[str, list[str]], tmp_path: Path) -> None:
    """An HLS playlist saved as .mp4, naming a segment on a web server: refused as text before
    ffprobe opens it; the server is never asked for anything."""
    base, seen = recorder
    video = tmp_path / "playlist.mp4"
    video.write_text(_playlist(base))
    out = tmp_path / "out"
    done = run_cli("run", str(video), "--out", str(out), "--no-progress")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (entry,) = summary(out)["inputs"]
    assert "not a readable video: it is text" in entry["error"], entry
    assert seen == []


def test_ffmpeg_reads_local_inputs_through_the_file_protocol_only(
        recorder: tuple[str, list[str]], tmp_path: Path) -> None:
    """Past the text check, ffprobe and ffmpeg still refuse any protocol but file: for a local
    input (-protocol_whitelist file): a playlist fetches nothing."""
    base, seen = recorder
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(_playlist(base))
    for argv in (ffprobe_argv(str(playlist)),
                 decode.decode_argv(str(playlist), Grid(Fraction(0), Fraction(1), 1))):
        with pytest.raises(FFmpegError) as failed:
            proc.run(argv, timeout=60)
        assert "Protocol 'http' not on whitelist 'file'!" in failed.value.stderr
    assert seen == []


@pytest.mark.parametrize("text", [
    "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=cam\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n",
    '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">'
    "<Period><AdaptationSet><Representation><BaseURL>seg.mp4</BaseURL></Representation>"
    "</AdaptationSet></Period></MPD>\n",
    "\ufeff#EXTM3U\n#EXTINF:2.0,\nseg.ts\n",
    "meeting notes, not a video\n" * 40,
], ids=["sdp", "dash", "m3u-with-bom", "plain"])
def test_text_named_like_a_video_is_refused_as_text(tmp_path: Path, text: str) -> None:
    """SDP, a DASH manifest, an M3U playlist with a byte-order mark, plain notes, each saved as
    .mp4: "not a readable video: it is text", before ffprobe runs."""
    video = tmp_path / "named.mp4"
    video.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="not a readable video: it is text"):
        probe(str(video))


def test_an_ffconcat_script_naming_a_fifo_fails_at_once(tmp_path: Path) -> None:
    """A 34-byte .mp4 that is an ffconcat script naming a FIFO (ffprobe once waited on it
    forever, on every rerun): fails as text within the timeout, summary.json written."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    video = tmp_path / "c.mp4"
    video.write_text("ffconcat version 1.0\nfile f\n")  # a name beside it: "safe" to ffmpeg
    out = tmp_path / "out"
    done = run_cli("run", str(video), "--out", str(out), "--no-progress", timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (entry,) = summary(out)["inputs"]
    assert "not a readable video: it is text" in entry["error"], entry


def test_a_yuv4mpeg_video_with_its_text_header_is_still_a_video(tmp_path: Path) -> None:
    """YUV4MPEG2 starts with a text line: it is still processed, done."""
    video = tmp_path / "raw.y4m"
    media.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "3",
                 "-pix_fmt", "yuv420p", str(video))
    out = tmp_path / "out"
    done = run_cli("run", str(video), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [e["status"] for e in summary(out)["inputs"]] == ["done"]


# -- cut-short transport streams -------------------------------------------------------------
@pytest.mark.parametrize(("name", "args", "packet"), [
    ("cut.ts", [], 188), ("cut.m2ts", ["-f", "mpegts", "-mpegts_m2ts_mode", "1"], 192)])
def test_a_transport_stream_ending_in_a_partial_packet_is_truncated(
        tmp_path: Path, name: str, args: list[str], packet: int) -> None:
    """MPEG-TS (188-byte packets) and M2TS (192): whole, probed; cut mid-packet, "truncated:
    ends in a partial N-byte packet"."""
    whole = media.testsrc(tmp_path / f"whole-{name}", seconds=4, size="160x120", out_args=args)
    assert whole.stat().st_size % packet == 0
    assert probe(str(whole)).duration_ms > 3000
    cut = write(tmp_path / name, whole.read_bytes()[:-100])
    with pytest.raises(InputError, match=f"truncated: ends in a partial {packet}-byte packet"):
        probe(str(cut))


# -- deadlines ---------------------------------------------------------------------------------
def test_deadlines_grow_with_the_media_they_cover() -> None:
    """The fixed part alone for a header read; more for more media seconds and more bytes."""
    rules = proc.Deadlines(probe_timeout=60, stall_timeout=120, time_factor=10)
    assert rules.deadline() == 60
    assert rules.deadline(media_seconds=30) == 60 + 300
    assert rules.deadline(size_bytes=10 * proc.READ_FLOOR) == 60 + 10
    assert rules.stall(step_seconds=60) > rules.stall(step_seconds=1) > 120


def test_ffprobe_runs_under_the_probe_timeout(small_video: Path, tmp_path: Path) -> None:
    """VIDEO_PIPELINE_PROBE_TIMEOUT too short for ffprobe: the input fails "timed out", in one
    line, and the run writes summary.json."""
    out = tmp_path / "out"
    done = run_cli("run", str(small_video), "--out", str(out), "--no-progress",
                   env={"VIDEO_PIPELINE_PROBE_TIMEOUT": "0.001"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (entry,) = summary(out)["inputs"]
    assert "timed out after 0.001 s" in entry["error"] and "\n" not in entry["error"], entry


@pytest.mark.parametrize(("name", "value"), [
    ("VIDEO_PIPELINE_PROBE_TIMEOUT", "0"), ("VIDEO_PIPELINE_FFMPEG_STALL_TIMEOUT", "soon"),
    ("VIDEO_PIPELINE_FFMPEG_TIME_FACTOR", "-1")])
def test_a_deadline_setting_that_makes_no_sense_stops_the_run(
        small_video: Path, tmp_path: Path, name: str, value: str) -> None:
    """Zero, negative or not a number: a configuration error naming the variable, exit 2."""
    done = run_cli("run", str(small_video), "--out", str(tmp_path / "out"), "--no-progress",
                   env={name: value})
    assert done.returncode == 2 and name in done.stderr, done.stderr


def test_a_command_past_its_deadline_is_killed() -> None:
    """proc.run of an ffmpeg that would run forever: killed at its deadline, "timed out"."""
    argv = [proc.FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2", "-f", "null",
            "-"]
    started = time.monotonic()
    with pytest.raises(FFmpegError, match=r"^ffmpeg timed out after 1 s"):
        proc.run(argv, timeout=1)
    assert time.monotonic() - started < 15
    assert proc.running() == 0


def _realtime_raw() -> list[str]:
    """An ffmpeg that writes raw frames at the speed of time, forever."""
    return [proc.FFMPEG, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=5",
            "-f", "rawvideo", "pipe:1"]


def test_a_streamed_command_past_its_deadline_is_killed() -> None:
    """Output that keeps coming, but past the deadline: killed, "timed out"."""
    stream = proc.Streamed(_realtime_raw(), timeout=2, stall=60)
    started = time.monotonic()
    with pytest.raises(FFmpegError, match="timed out after 2 s"):
        while stream.read(3072):
            pass
        stream.finish()
    assert time.monotonic() - started < 15


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Sends a third of a video, then nothing, holding the connection open."""

    body = b""
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[:len(self.body) // 3])
        self.wfile.flush()
        self.release.wait(120)

    def log_message(self, *args: object) -> None:
        pass


def test_a_decode_whose_source_stalls_is_killed(
        vbr_video: Path, tmp_path: Path, deadlines: Callable[..., None]) -> None:
    """Decoding for the local model from a server that stops sending: killed once its output
    has not moved for the stall timeout, "stalled", one line."""
    faststart = tmp_path / "fast.mp4"
    media.ffmpeg("-i", str(vbr_video), "-c", "copy", "-movflags", "+faststart", str(faststart))
    class Handler(_Stalling):
        pass

    Handler.body, Handler.release = faststart.read_bytes(), threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    deadlines(stall_timeout=2, time_factor=0.1)
    started = time.monotonic()
    try:
        with pytest.raises(FFmpegError, match=r"^ffmpeg stalled: no output for \d+(\.\d+)? s"):
            list(decode.decode(f"http://127.0.0.1:{httpd.server_address[1]}/v.mp4",
                               Grid(Fraction(1, 2), Fraction(1), 30)))
    finally:
        Handler.release.set()
        httpd.shutdown()
        httpd.server_close()
    assert time.monotonic() - started < 30


# -- children --------------------------------------------------------------------------------
def test_kill_all_ends_every_live_child_at_once() -> None:
    """Two children in flight (one streamed, one run to completion): kill_all kills both and
    says 2; both callers get an error at once, and nothing is left running."""
    errors: list[FFmpegError] = []

    def streamed() -> None:
        stream = proc.Streamed(_realtime_raw(), timeout=300, stall=300)
        try:
            while stream.read(3072):
                pass
            stream.finish()
        except FFmpegError as exc:
            errors.append(exc)

    def ran() -> None:
        try:
            proc.run(_realtime_raw()[:-3] + ["-f", "null", "-"], timeout=300)
        except FFmpegError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=streamed), threading.Thread(target=ran)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while proc.running() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert proc.kill_all() == 2
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 10
    assert len(errors) == 2 and all("stopped" in str(e) for e in errors), errors
    assert proc.running() == 0


_ORPHAN = """
import threading, time
from pipeline.media import proc
argv = ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"]
threading.Thread(target=lambda: proc.run(argv, timeout=600), daemon=True).start()
print("started", flush=True)
time.sleep(600)
"""


def _ffmpegs_of(pid: int) -> list[int]:
    """The ffmpeg processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if name == "ffmpeg" and int(rest.split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_children_die_with_the_process_that_started_them() -> None:
    """A process killed outright (SIGKILL, no handler runs) while its worker thread runs an
    ffmpeg: the ffmpeg dies too (parent-death signal), it does not run on as an orphan."""
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN], cwd=REPO, text=True,
                              stdout=subprocess.PIPE)
    orphans: list[int] = []
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while not orphans and time.monotonic() < deadline:
            orphans = _ffmpegs_of(parent.pid)
            time.sleep(0.05)
        assert orphans, "the ffmpeg never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in orphans)
    finally:
        parent.kill()
        parent.wait()
        for pid in orphans:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_many_children_started_from_many_threads_all_finish() -> None:
    """40 short commands from 8 threads at once, each through the parent-death wrapper, all
    complete, and none is left listed as running."""
    argv = [proc.FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x32",
            "-frames:v", "1", "-f", "null", "-"]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                proc.run(argv, timeout=120)
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not failures and not any(t.is_alive() for t in threads)
    assert proc.running() == 0


def test_a_socket_is_not_a_video(tmp_path: Path) -> None:
    """A UNIX socket named like a video, probed directly: "not a regular file (a socket)"."""
    path = tmp_path / "s.mp4"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(InputError, match=r"not a regular file \(a socket\)"):
            probe(str(path))
