"""URL sources from servers that misbehave (a real HTTP server on 127.0.0.1, also standing in
for S3): a body cut short is never taken for the whole video, a download that drips ends within
its deadline, a stop request ends a download at once and leaves nothing behind, and a server
that ignores Range or sends its body chunked is still processed."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import media
import pytest
from bad_http import Behaviour, Served, bad_server
from batch_support import cli, run_cli, summary, wait_for
from s3_support import FAKE_AWS

from pipeline._cli import options
from pipeline._cli.main import build_parser, main
from pipeline.batch import download, remote
from pipeline.errors import ConfigError, InputError
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "test-key-downloads"
BUCKET = "videos"


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of MPEG-TS, 320x240, ~940 kB: a stream with no index, so its first half is a
    valid 10 s video that nothing in the file tells from the whole."""
    return media.testsrc(tmp_path_factory.mktemp("dl") / "talk.ts", seconds=20, rate=25,
                         codec=["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k",
                                "-g", "25", "-pix_fmt", "yuv420p"])


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s, 160x120, other content than `small_video`."""
    return media.testsrc(tmp_path_factory.mktemp("dl-other") / "other.mp4", seconds=8,
                         size="160x120", extra_vf="hue=h=120")


@pytest.fixture
def served_as() -> Iterator[Callable[[Behaviour], Served]]:
    """Start misbehaving servers for the test; all stopped after it."""
    with contextlib.ExitStack() as stack:
        yield lambda behaviour: stack.enter_context(bad_server(behaviour))


def source_of(served: Served, kind: str, name: str) -> tuple[str, list[str], dict[str, str]]:
    """The input naming `name` on `served` as an http(s) URL (with a query string that must
    never be shown) or as s3://BUCKET/NAME with the server as the storage endpoint; and the
    flags and environment that go with it."""
    if kind == "s3":
        return f"s3://{BUCKET}/{name}", ["--s3-endpoint-url", served.base], dict(FAKE_AWS)
    return served.url(f"{name}?X-Amz-Signature=s3cr3t"), [], {}


def shown(served: Served, kind: str, name: str) -> str:
    return f"s3://{BUCKET}/{name}" if kind == "s3" else served.url(name)


def one_line(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert "s3cr3t" not in done.stderr + done.stdout


def timeline(out: Path) -> dict[str, Any]:
    (path,) = out.glob("*/timeline.json")
    found: dict[str, Any] = json.loads(path.read_text())
    return found


# -- a body cut short ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["http", "s3"])
def test_a_body_cut_short_fails_alone_and_a_rerun_processes_it_whole(
        kind: str, tmp_path: Path, talk: Path, served_as: Callable[[Behaviour], Served]) -> None:
    """The server declares the whole size and closes after half the body (an object in
    storage: every time it is asked for the rest too): the video fails with one line naming
    the bytes received, and nothing is recorded as done; once the server is fixed, a rerun
    processes all 20 s."""
    behaviour = Behaviour(talk.read_bytes(), cut=True, cut_ranges=kind == "s3")
    served = served_as(behaviour)
    source, flags, env = source_of(served, kind, "talk.ts")
    out = tmp_path / "out"
    done = run_cli("run", source, "--out", str(out), "--no-progress", *flags, env=env)
    one_line(done)
    size = len(behaviour.body)
    (entry,) = summary(out)["inputs"]
    assert (done.returncode, entry["status"]) == (1, "failed"), done.stderr
    left = size
    for _ in range(1 if kind == "http" else 6):  # storage: asked for the rest 5 times
        left -= left // 2
    received = size - left
    assert entry["error"] == (f"{shown(served, kind, 'talk.ts')}: download incomplete: "
                              f"received {received} of {size} bytes (the connection closed "
                              "early)")
    assert not list(out.glob("*/timeline.json"))

    behaviour.cut = behaviour.cut_ranges = False
    again = run_cli("run", source, "--out", str(out), "--no-progress", *flags, env=env)
    one_line(again)
    (entry,) = summary(out)["inputs"]
    assert (again.returncode, entry["status"]) == (0, "done"), again.stderr
    assert_whole(out)


def assert_whole(out: Path) -> None:
    """The video processed is all 20 s of `talk`."""
    made = timeline(out)
    assert made["source"]["duration_ms"] >= 19_900
    assert max(f["frame_info"]["time"] for f in made["frames"]) >= 19_000


def test_an_object_cut_short_is_asked_for_the_rest(
        tmp_path: Path, talk: Path, served_as: Callable[[Behaviour], Served]) -> None:
    """An object in storage whose body ends at half its size is asked for the rest (a range
    from where it stopped, as the same version) and processed whole in one run."""
    served = served_as(Behaviour(talk.read_bytes(), cut=True))
    source, flags, env = source_of(served, "s3", "talk.ts")
    out = tmp_path / "out"
    done = run_cli("run", source, "--out", str(out), "--no-progress", *flags, env=env)
    one_line(done)
    assert done.returncode == 0, done.stderr
    assert_whole(out)
    size = talk.stat().st_size
    assert ("GET", f"bytes={size // 2}-{size - 1}") in served.requests


def test_a_ranged_read_cut_short_fails_with_the_bytes_received(
        small_video: Path, served_as: Callable[[Behaviour], Served]) -> None:
    """Probing by ranged reads (URL mode), a 206 whose body stops at half its declared length
    fails the source with the bytes received."""
    served = served_as(Behaviour(small_video.read_bytes(), cut_ranges=True))
    source = remote.resolve(served.url("clip.mp4"), endpoint_url=None, timeout=5)
    assert source.size == small_video.stat().st_size
    with pytest.raises(InputError, match=r"download incomplete: received 32768 of 65536 bytes"):
        source.probe()


def test_a_chunked_body_cut_short_fails_and_leaves_no_file(
        tmp_path: Path, talk: Path, served_as: Callable[[Behaviour], Served]) -> None:
    """A chunked answer (no size declared) whose connection closes before its last chunk
    fails as incomplete, and the partial file is removed."""
    served = served_as(Behaviour(talk.read_bytes(), ranges=False, chunked=True, cut=True))
    with pytest.raises(InputError, match=r": download incomplete: received \d+ bytes \(the "
                                         r"connection closed before the body's end\)$"):
        download.download(served.url("talk.ts"), str(tmp_path), max_bytes=10**9, timeout=5)
    assert list(tmp_path.iterdir()) == []


# -- downloads that drip ----------------------------------------------------------------------

DRIPS = {
    # (every, chunked, the settings): what ends it
    "the deadline, size declared": (0.5, False, {"DOWNLOAD_MIN_RATE": "1000000"}),
    "the deadline, size unknown": (0.5, True, {}),
    "the stall limit": (5.0, False, {}),
}


@pytest.mark.parametrize("case", list(DRIPS))
def test_a_dripping_download_fails_within_its_deadline(
        case: str, tmp_path: Path, talk: Path, served_as: Callable[[Behaviour], Served]) -> None:
    """A byte every 0.5 s never stalls a read, yet the download fails "too slow" about
    VIDEO_PIPELINE_DOWNLOAD_TIMEOUT (2 s here) plus its size at the minimum rate after it
    began (its size unknown: what has arrived); a byte every 5 s fails it as stalled after
    2 s. One line either way."""
    every, chunked, settings = DRIPS[case]
    served = served_as(Behaviour(talk.read_bytes(), ranges=False, chunked=chunked, drip=every))
    env = {f"VIDEO_PIPELINE_{k}": v for k, v in {"DOWNLOAD_TIMEOUT": "2", **settings}.items()}
    out = tmp_path / "out"
    done = run_cli("run", served.url("talk.ts?X-Amz-Signature=s3cr3t"), "--out", str(out),
                   "--no-progress", env=env, timeout=60)
    ended = time.monotonic()
    one_line(done)
    (entry,) = summary(out)["inputs"]
    assert (done.returncode, entry["status"]) == (1, "failed"), done.stderr
    size = talk.stat().st_size
    if every < 2:
        allowed = 2 + (0 if chunked else size / 1_000_000)
        assert "download too slow: received " in entry["error"], entry["error"]
    else:
        allowed = 2 + 0.1
        assert "download stalled: no data for 2 s" in entry["error"], entry["error"]
    took = ended - served.whole_gets[0]
    print(f"{case}: failed {took:.2f} s after the download began (allowed {allowed:.2f} s)")
    assert allowed - 0.5 < took < allowed + 5


def test_the_minimum_rate_is_read_from_the_environment_and_checked() -> None:
    """VIDEO_PIPELINE_DOWNLOAD_MIN_RATE (bytes a second, default 50000) has no flag; zero or a
    word is refused, naming the variable."""
    args = build_parser().parse_args(["run", "x.mp4", "--out", "o"])
    assert options.settings(args, {}, run=True).downloads.min_rate == 50_000
    got = options.settings(args, {"VIDEO_PIPELINE_DOWNLOAD_MIN_RATE": "20000"}, run=True)
    assert got.downloads.min_rate == 20_000
    for bad in ("0", "abc"):
        with pytest.raises(ConfigError, match="VIDEO_PIPELINE_DOWNLOAD_MIN_RATE"):
            options.settings(args, {"VIDEO_PIPELINE_DOWNLOAD_MIN_RATE": bad}, run=True)


# -- a stop request ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["http", "s3"])
def test_sigterm_during_a_download_ends_the_run_at_once_and_leaves_nothing(
        kind: str, tmp_path: Path, talk: Path, small_video: Path,
        served_as: Callable[[Behaviour], Served]) -> None:
    """SIGTERM 2 s into a download that drips a byte every 5 s: the run exits 130 within 10 s,
    summary.json lists both inputs and neither as pending, and no temporary download is left
    in TMPDIR."""
    served = served_as(Behaviour(talk.read_bytes(), drip=5.0))
    source, flags, env = source_of(served, kind, "talk.ts")
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "out"
    proc = cli("run", source, str(small_video), "--out", str(out), "--no-progress", *flags,
               env={**env, "TMPDIR": str(temp)})
    try:
        wait_for(lambda: bool(served.whole_gets), 60, "the download to begin")
        time.sleep(2)
        assert list(temp.glob("video-pipeline-dl-*/dl-*-talk.ts"))  # the download, under way
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.communicate()
    print(f"{kind}: SIGTERM to exit {took:.2f} s")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    entries = summary(out)["inputs"]
    assert [e["source"] for e in entries] == [shown(served, kind, "talk.ts"), str(small_video)]
    assert [e["status"] for e in entries] == ["failed", "failed"]
    assert all("interrupted" in e["error"] for e in entries)
    assert list(temp.glob("video-pipeline-dl-*")) == []


# -- servers that ignore Range, or send chunked -----------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["whole body", "chunked"])
def test_resolving_reads_no_body_when_the_server_ignores_range(
        chunked: bool, served_as: Callable[[Behaviour], Served]) -> None:
    """A server that answers the first-byte GET with its whole body, a byte a second: resolve
    returns at once, with the declared size (none for a chunked answer); such a source is not
    probed by ranged reads."""
    served = served_as(Behaviour(b"x" * 100_000, ranges=False, chunked=chunked, drip=1.0))
    started = time.monotonic()
    source = remote.resolve(served.url("v.mp4"), endpoint_url=None, timeout=5)
    assert time.monotonic() - started < 2
    assert source.size == (None if chunked else 100_000)
    assert source.probe() is None


@pytest.mark.parametrize("chunked", [False, True], ids=["whole body", "chunked"])
def test_a_server_that_ignores_range_is_processed_and_its_id_follows_its_content(
        chunked: bool, tmp_path: Path, small_video: Path, other: Path,
        served_as: Callable[[Behaviour], Served]) -> None:
    """A server that answers every GET with 200 and the whole body (chunked: with no size at
    all): the video is processed; a rerun finds it done; new content at the same URL, with
    the same ETag, is a new video."""
    behaviour = Behaviour(small_video.read_bytes(), ranges=False, chunked=chunked)
    url = served_as(behaviour).url("clip.mp4?X-Amz-Signature=s3cr3t")
    out = tmp_path / "out"
    ids = []
    for body, status in ((None, "done"), (None, "skipped"), (other.read_bytes(), "done")):
        if body is not None:
            behaviour.body = body
        done = run_cli("run", url, "--out", str(out), "--no-progress")
        one_line(done)
        (entry,) = summary(out)["inputs"]
        assert (done.returncode, entry["status"]) == (0, status), done.stderr
        ids.append(entry["id"])
    assert ids[0] == ids[1] != ids[2] and ids[0].startswith("clip-")


@pytest.fixture
def api(serve: Callable[..., Server]) -> Server:
    """`serve --allow-local-urls`: it fetches URL inputs from 127.0.0.1."""
    return serve(limits=InputLimits(allow_local_urls=True, url_timeout=10))


def test_a_source_of_unknown_size_is_never_sent_by_reference(
        tmp_path: Path, small_video: Path, api: Server,
        served_as: Callable[[Behaviour], Served]) -> None:
    """URL mode with no --stage: a source whose size is known goes to the API by reference; the
    same video sent chunked (no size) cannot, and fails alone saying it has nowhere to stage."""
    body = small_video.read_bytes()
    sized = served_as(Behaviour(body)).url("clip.mp4")
    unsized = served_as(Behaviour(body, ranges=False, chunked=True)).url("clip.mp4")
    out = tmp_path / "out"
    assert main(["run", sized, unsized, "--out", str(out), "--backend", "clarifai",
                 "--insecure", "--api-base", f"127.0.0.1:{api.port}", "--mode", "url",
                 "--no-progress"], {"CLARIFAI_PAT": KEY}) == 1
    entries = summary(out)["inputs"]
    assert [e["status"] for e in entries] == ["done", "failed"]
    assert "--mode url has no --stage" in entries[1]["error"]
    assert api.config.request_log is not None
    kinds = [json.loads(line)["kind"] for line in
             Path(api.config.request_log).read_text().splitlines()]
    assert kinds == ["video-url"]
