"""--notify: a signed POST when each video ends and when the batch ends, to a real loopback
receiver; retried when the receiver fails, bounded when it is dead or hung, noted in
summary.json, never changing the exit code, never carrying a secret or a URL's query."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import media
import pytest
from batch_support import REPO, make_video, run_cli, stop_process, summary, wait_for
from receiver import dead_url, expected_signature, receiver, silent_listener

from pipeline.notify import Bounds, Notifier

pytestmark = pytest.mark.integration

SECRET = "notify-secret-7c41e0b9"
KEY = "clarifai-key-that-must-not-travel-55aa"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("notify")
    bad = folder / "notes.mp4"
    bad.write_text("this is not a video\n" * 40)
    return {"one": make_video(folder / "one.mp4", seconds=4, hue=30),
            "two": make_video(folder / "two.mp4", seconds=4, hue=90), "bad": bad,
            "recording": media.testsrc(folder / "recording.ts", seconds=8,
                                       extra_vf="noise=alls=20:allf=t")}


def notified_run(out: Path, url: str, *inputs: Path | str, env: dict[str, str] | None = None,
                 ) -> tuple[int, str, float]:
    started = time.monotonic()
    done = run_cli("run", *map(str, inputs), "--out", str(out), "--notify", url,
                   "--no-progress", env={"VIDEO_PIPELINE_NOTIFY_SECRET": SECRET,
                                         "CLARIFAI_PAT": KEY, **(env or {})}, timeout=180)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr, time.monotonic() - started


def grow(source: Path, target: Path, stop: threading.Event) -> threading.Thread:
    """Copy `source` into `target` a slice every 0.3 s (a recording still being written)."""
    data = source.read_bytes()
    target.write_bytes(data[:len(data) // 4])

    def write() -> None:
        at = len(data) // 4
        with open(target, "ab") as fh:
            while at < len(data) and not stop.wait(0.3):
                fh.write(data[at:at + len(data) // 40])
                fh.flush()
                at += len(data) // 40

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_every_event_is_signed_and_one_is_sent_per_video_and_per_batch(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """A done, a failed and a deferred video (a recording still growing) send one event each,
    the batch one more with summary.json's counts; every body's HMAC-SHA256 checks out under
    the secret, and neither the secret, the key, nor the URL's query reach a body, a message or
    summary.json."""
    growing, stop = tmp_path / "watch" / "recording.ts", threading.Event()
    growing.parent.mkdir()
    writer = grow(videos["recording"], growing, stop)
    out = tmp_path / "out"
    try:
        with receiver(SECRET) as hook:
            code, err, _ = notified_run(out, hook.url + "?token=query-token-31f", videos["one"],
                                        videos["bad"], growing,
                                        env={"VIDEO_PIPELINE_SETTLE_SECONDS": "2"})
    finally:
        stop.set()
        writer.join(10)
    assert code == 1, err
    assert [d.signed for d in hook.seen] == [True] * 4
    events = hook.accepted()
    assert sorted(e["event"] for e in events[:3]) == ["video.deferred", "video.done",
                                                      "video.failed"]
    assert events[3]["event"] == "batch.finished" and len(events) == 4
    saved = summary(out)
    assert events[3]["counts"] == saved["counts"] == {"done": 1, "skipped": 0, "failed": 1,
                                                      "deferred": 1}
    by_name = {Path(e["video"]["source"]).name: e["video"] for e in events[:3]}
    assert by_name["one.mp4"]["status"] == "done"
    assert Path(by_name["one.mp4"]["timeline"]).is_file()
    assert by_name["notes.mp4"]["error"].startswith(str(videos["bad"]))
    assert len({e["id"] for e in events}) == 4 and len({e["run"] for e in events}) == 1
    assert [d.headers["X-Video-Pipeline-Event"] for d in hook.seen] == [
        e["event"] for e in events]
    assert saved["notify"] == {"delivered": 4, "failed": 0, "last_error": None}
    everything = b"".join(d.body for d in hook.seen) + (out / "summary.json").read_bytes()
    everything += err.encode()
    assert not any(s in everything for s in (SECRET.encode(), KEY.encode(), b"query-token"))


def test_a_url_input_is_named_without_its_query_string(
        web: tuple[Path, str], videos: dict[str, Path], tmp_path: Path) -> None:
    """A video fetched by a presigned-style URL is named in its event without the query (no
    signature, no credential)."""
    root, base = web
    (root / "clip.mp4").write_bytes(videos["two"].read_bytes())
    url = f"{base}/clip.mp4?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef"
    with receiver(SECRET) as hook:
        code, err, _ = notified_run(tmp_path / "out", hook.url, url)
    assert code == 0, err
    video = hook.accepted()[0]["video"]
    assert video["source"] == f"{base}/clip.mp4" and video["status"] == "done"
    assert not any(b"AKIAEXAMPLE" in d.body or b"deadbeef" in d.body for d in hook.seen)


def test_a_receiver_that_fails_twice_gets_every_event_by_retrying(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """The receiver answers 503 to its first two requests: the first event is sent again (the
    same id and body, signed each time) until it is accepted; every event is delivered."""
    out = tmp_path / "out"
    with receiver(SECRET, fail_first=2) as hook:
        code, err, _ = notified_run(out, hook.url, videos["one"], videos["two"])
    assert code == 0, err
    statuses = [d.answered for d in hook.seen]
    assert statuses[:2] == [503, 503] and all(s == 204 for s in statuses[2:])
    first = {d.headers["X-Video-Pipeline-Delivery"] for d in hook.seen[:3]}
    assert len(first) == 1 and len({d.body for d in hook.seen[:3]}) == 1
    assert all(d.signed for d in hook.seen)
    assert [e["event"] for e in hook.accepted()] == ["video.done", "video.done",
                                                     "batch.finished"]
    assert summary(out)["notify"] == {"delivered": 3, "failed": 0, "last_error": None}


def test_a_dead_receiver_costs_the_batch_its_bound_and_never_its_exit_code(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """Nothing listens at the URL: the batch ends within the documented allowance of a run
    without --notify (10 s to drain, 5 s for an attempt in flight), exits 0 as that run does,
    and summary.json and the warning say the callbacks were not delivered."""
    started = time.monotonic()
    plain = run_cli("run", str(videos["one"]), str(videos["two"]), "--out",
                    str(tmp_path / "plain"), "--no-progress", timeout=180)
    baseline = time.monotonic() - started
    assert plain.returncode == 0, plain.stderr
    out = tmp_path / "out"
    code, err, took = notified_run(out, dead_url(), videos["one"], videos["two"])
    assert code == 0, err
    bounds = Bounds()
    assert took < baseline + bounds.drain + bounds.attempt + 5, (took, baseline)
    noted = summary(out)["notify"]
    assert noted["delivered"] == 0 and noted["failed"] == 3
    assert "cannot reach the receiver" in noted["last_error"]
    assert "3 of 3 --notify callbacks not delivered" in err


def test_a_hung_receiver_is_given_up_within_the_bounds(tmp_path: Path) -> None:
    """A receiver that accepts and never answers: each attempt ends at its timeout, and closing
    the notifier returns within the drain allowance plus one attempt, every event failed."""
    bounds = Bounds(attempt=0.5, settle=30, drain=1.0)
    with silent_listener() as url:
        notifier = Notifier(url, SECRET, bounds=bounds)
        for n in range(3):
            notifier.send("video.done", {"n": n})
        started = time.monotonic()
        report = notifier.close()
        took = time.monotonic() - started
    assert took < bounds.drain + bounds.attempt + 1.5, took
    assert report.delivered == 0 and report.failed == 3
    assert report.last_error is not None


def test_the_signature_is_the_documented_hmac_of_the_exact_body(tmp_path: Path) -> None:
    """The header is sha256=<hex of HMAC-SHA256(secret, body)> over the bytes received, as a
    receiver computes it with the standard library; a changed byte no longer matches."""
    with receiver(SECRET) as hook:
        notifier = Notifier(hook.url, SECRET)
        notifier.send("batch.finished", {"counts": {"done": 2}, "name": "ünïcödé"})
        assert notifier.close().delivered == 1
    (delivery,) = hook.seen
    header = delivery.headers["X-Video-Pipeline-Signature"]
    assert header == expected_signature(SECRET, delivery.body)
    assert header != expected_signature(SECRET, delivery.body.replace(b"2", b"3"))
    assert delivery.event["name"] == "ünïcödé" and delivery.event["time"].endswith("Z")


@pytest.mark.parametrize(("url", "secret", "said"), [
    ("https://hooks.example/abc?token=zzz-secret-token", None, "VIDEO_PIPELINE_NOTIFY_SECRET"),
    ("ftp://hooks.example/abc?token=zzz-secret-token", SECRET, "http(s) URL"),
    ("http://[bad?token=zzz-secret-token", SECRET, "http(s) URL"),
])
def test_an_unusable_notify_setting_stops_the_run_before_anything(
        tmp_path: Path, url: str, secret: str | None, said: str) -> None:
    """--notify without its secret, or with no http(s) URL, is a configuration error (exit 2)
    that does not repeat the URL (it may hold a token); nothing is written."""
    env = {"VIDEO_PIPELINE_NOTIFY_SECRET": secret} if secret else {}
    done = run_cli("run", "nothing.mp4", "--out", str(tmp_path / "out"), "--notify", url,
                   env=env)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "zzz-secret-token" not in done.stderr and not (tmp_path / "out").exists()


def test_the_receiver_in_the_docs_verifies_a_real_runs_callbacks(
        videos: dict[str, Path], tmp_path: Path) -> None:
    """The receiver example of docs/integration.md, run as written: it accepts a real run's
    events (their signatures check out) and prints one line per event; under another secret it
    refuses them all (401), and the run still exits 0, the refusals noted."""
    page = (REPO / "docs" / "integration.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(# receiver\.py.*?)```", page, re.S)
    script = tmp_path / "receiver.py"
    script.write_text(code)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcomes = {}
    for secret in (SECRET, "another-secret"):
        server = subprocess.Popen([sys.executable, str(script)], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={"VIDEO_PIPELINE_NOTIFY_SECRET": secret,
                                       "PORT": str(port)})
        try:
            wait_for(lambda: _listening(port), 30, "the docs' receiver")
            code_, err, _ = notified_run(tmp_path / secret, f"http://127.0.0.1:{port}/",
                                         videos["one"])
        finally:
            stop_process(server, 5)
        outcomes[secret] = (code_, err, server.communicate()[0].splitlines(),
                            summary(tmp_path / secret)["notify"])
    code_, _, lines, noted = outcomes[SECRET]
    assert code_ == 0 and noted == {"delivered": 2, "failed": 0, "last_error": None}
    assert lines == [f"video.done {videos['one']}",
                     'batch.finished {"done": 1, "skipped": 0, "failed": 0}']
    code_, err, lines, noted = outcomes["another-secret"]
    assert code_ == 0 and lines == [] and noted["delivered"] == 0 and noted["failed"] == 2
    assert noted["last_error"] == "the receiver answered HTTP 401" and "warning" in err


def _listening(port: int) -> bool:
    with socket.socket() as client:
        return client.connect_ex(("127.0.0.1", port)) == 0
