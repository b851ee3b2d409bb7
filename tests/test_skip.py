"""--skip-similar end to end: a slide talk through the local backend and through `serve` (what
is sent, what is carried and marked so, every output), the same picture scored the same by
both, a resumed run (stopped by the budget, or killed) that neither bills again nor loses
carried frames, and the audit tightening a video's threshold against a test server whose
scores follow each image's brightness."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import media
import pytest
from batch_support import cli, kill_after_saving, run_cli
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2
from PIL import Image, ImageStat
from serve_support import logged_server

from pipeline.batch.runner import Runner
from pipeline.serve.server import ServeConfig, Server
from pipeline.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "skip-key-41c9"
SLIDE_S = 10
SLIDES = 3  # 30 instants at 1000 ms: a new picture at 10 s and 20 s


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slide talk: three still pictures of 10 s each (bars, a skin-toned gradient open_nsfw
    scores above 0, a colour chart), with temporal camera noise, 320x240 at 25 fps."""
    path = tmp_path_factory.mktemp("skip") / "talk.mp4"
    stills = ["smptebars=s=320x240:r=25",
              "gradients=s=320x240:r=25:speed=0.00001:c0=0xffdbac:c1=0x8d5524:seed=7",
              "rgbtestsrc=s=320x240:r=25"]
    inputs = [a for s in stills for a in ("-f", "lavfi", "-t", str(SLIDE_S), "-i", s)]
    graph = "".join(f"[{i}:v]" for i in range(SLIDES)) + \
        f"concat=n={SLIDES}:v=1:a=0,noise=alls=6:allf=t,format=yuv420p[v]"
    media.ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264",
                 "-preset", "veryfast", "-g", "25", str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with logged_server(tmp_path_factory.mktemp("serve"), KEY) as started:
        yield started


def _requests(log: str | None, since: float = 0) -> list[dict[str, Any]]:
    lines = Path(str(log)).read_text().splitlines()
    return [r for r in map(json.loads, lines)
            if r["method"] == "PostModelOutputs" and r["time"] >= since]


def _clarifai(port: int) -> dict[str, Any]:
    return {"backend": "clarifai", "api_base": f"127.0.0.1:{port}", "insecure": True,
            "api_key": KEY}


def _run(video: Path, out: Path, **options: Any) -> Any:
    """One in-process run with --skip-similar: its outcome, and, if done, its timeline."""
    (outcome,) = Runner(Settings.from_options(skip_similar=True, **options),
                        str(out)).run([str(video)])
    root = out / str(outcome.id)
    done = (root / "timeline.json").is_file()
    return outcome, json.loads((root / "timeline.json").read_text()) if done else None


def _selection(out: Path, outcome: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (out / str(outcome.id) / "chunks.json").read_text())["selection"]
    return found


def _values(timeline: dict[str, Any]) -> list[dict[str, float]]:
    return [{c["name"]: c["value"] for c in f["data"]["concepts"]} for f in timeline["frames"]]


@pytest.mark.parametrize("strategy", ["frames", "compact"])
def test_a_slide_talk_sends_each_picture_once_a_carry_and_marks_the_rest(
        talk: Path, tmp_path: Path, strategy: str) -> None:
    """Local backend: the pictures at 0, 10 and 20 s are sent (and the audited instants);
    every other instant carries the concepts of the last one sent, says so in timeline.json,
    frames.csv and frames.jsonl, and summary.json counts sampled, billed and carried."""
    out = tmp_path / "out"
    outcome, timeline = _run(talk, out, strategy=strategy)
    selection = _selection(out, outcome)
    assert selection["chosen"] == [0, 10, 20]
    sent = set(selection["sent"])
    frames = timeline["frames"]
    assert len(frames) == 30 and [f["frame_info"]["time"] for f in frames] == [
        500 + 1000 * i for i in range(30)]
    for i, frame in enumerate(frames):
        info = frame["frame_info"]
        if i in sent:
            assert "carried_from_ms" not in info
        else:
            anchor = 10 * (i // 10)
            assert info["carried_from_ms"] == 500 + 1000 * anchor
            assert frame["data"] == frames[anchor]["data"]
    entry = json.loads((out / "summary.json").read_text())["inputs"][0]
    assert (entry["frames_sampled"], entry["frames_billed"], entry["frames_carried"]) == (
        30, len(sent), 30 - len(sent))
    assert entry["audit"]["frames"] == len(sent) - 3
    root = out / str(outcome.id)
    rows = list(csv.DictReader(io.StringIO((root / "frames.csv").read_text())))
    assert {r["carried_from_ms"] for r in rows if r["time_ms"] == "1500"} == {"500"}
    lines = [json.loads(line) for line in (root / "frames.jsonl").read_text().splitlines()]
    assert lines[11]["carried_from_ms"] == 10500 or 11 in sent
    assert timeline["skipping"]["frames_carried"] == 30 - len(sent)


def test_through_serve_each_request_carries_and_bills_only_the_instants_sent(
        talk: Path, tmp_path: Path, server: Server) -> None:
    """compact through serve, 2 s a chunk: each request is a video of only the instants it
    carries (serve samples and bills one frame each), the run bills what was sent, and the
    timeline holds every instant."""
    began = time.time()
    outcome, timeline = _run(talk, tmp_path / "out", strategy="compact", max_seconds=2,
                             **_clarifai(server.port))
    sent = _requests(server.config.request_log, began)
    chunks = json.loads((tmp_path / "out" / str(outcome.id) / "chunks.json").read_text())
    # (requests in flight together arrive in either order)
    assert sorted(r["billed_frames"] for r in sent) == sorted(
        len(c["instants"]) for c in chunks["chunks"])
    assert all(r["kind"] == "video-bytes" and 1 <= r["billed_frames"] <= 2 for r in sent)
    assert sum(r["billed_frames"] for r in sent) == outcome.frames_billed == len(
        chunks["selection"]["sent"])
    assert len(timeline["frames"]) == 30


@pytest.mark.parametrize("strategy", ["frames", "compact"])
def test_the_local_backend_and_serve_score_a_given_picture_the_same(
        talk: Path, tmp_path: Path, server: Server, strategy: str) -> None:
    """The same proxy frames and JPEGs, scored in process and through serve: the same values
    (to the six places the local backend keeps), the same carried frames."""
    _, local = _run(talk, tmp_path / "local", strategy=strategy)
    _, served = _run(talk, tmp_path / "served", strategy=strategy, **_clarifai(server.port))
    assert [f["frame_info"] for f in local["frames"]] == \
        [f["frame_info"] for f in served["frames"]]
    for mine, theirs in zip(_values(local), _values(served), strict=True):
        assert mine.keys() == theirs.keys()
        assert all(abs(mine[k] - theirs[k]) < 1e-6 for k in mine)


def test_a_run_stopped_by_the_budget_resumes_without_billing_again(
        talk: Path, tmp_path: Path, server: Server) -> None:
    """Stopped after 2 frames (--max-billed-frames 2), then rerun: the rerun bills only the
    instants not yet answered, and its timeline, carried frames included, is byte for byte
    an uninterrupted run's."""
    options = {"strategy": "compact", "max_seconds": 1, **_clarifai(server.port)}
    began = time.time()
    stopped, _ = _run(talk, tmp_path / "out", max_billed_frames=2, **options)
    first = _requests(server.config.request_log, began)
    assert stopped.status == "stopped" and "billing budget reached" in str(stopped.note)
    assert sum(r["billed_frames"] for r in first) == stopped.frames_billed == 2
    again = time.time()
    resumed, timeline = _run(talk, tmp_path / "out", **options)
    second = _requests(server.config.request_log, again)
    assert resumed.status == "done" and resumed.resumed == 2
    whole, _ = _run(talk, tmp_path / "whole", **options)
    assert sum(r["billed_frames"] for r in second) == whole.frames_billed - 2
    assert any("carried_from_ms" in f["frame_info"] for f in timeline["frames"])
    assert (tmp_path / "out" / str(resumed.id) / "timeline.json").read_bytes() == \
        (tmp_path / "whole" / str(whole.id) / "timeline.json").read_bytes()


def test_a_killed_run_resumes_from_its_saved_selection(talk: Path, tmp_path: Path,
                                                       server: Server) -> None:
    """SIGKILL once one chunk of chosen instants is saved (serve answering slowly): the rerun
    sends the chunks that were not saved, no other, and writes the uninterrupted timeline."""
    slow = Server(ServeConfig(port=0, api_key=KEY, latency_ms=1500,
                              request_log=str(tmp_path / "slow.jsonl")))
    slow.start()

    def args(out: Path, port: int) -> list[str]:
        return ["run", str(talk), "--out", str(out), "--strategy", "compact", "--skip-similar",
                "--audit-share", "0.3", "--max-seconds", "1", "--concurrency", "1",
                "--backend", "clarifai", "--insecure", "--api-base", f"127.0.0.1:{port}",
                "--no-progress"]

    try:
        saved, sizes = kill_after_saving(
            cli(*args(tmp_path / "out", slow.port), env={"CLARIFAI_PAT": KEY}),
            tmp_path / "out", results=1)
        assert slow.servicer.in_flight.wait_idle(10)  # the killed run's last request logged
        before = len(_requests(slow.config.request_log))
        done = run_cli(*args(tmp_path / "out", slow.port), env={"CLARIFAI_PAT": KEY},
                       timeout=300)
        assert done.returncode == 0, done.stderr
        resent = [r["size_bytes"] for r in _requests(slow.config.request_log)[before:]]
    finally:
        slow.stop(grace=0)
    assert sorted(resent) == sorted(size for i, size in sizes.items() if i not in saved)
    whole = run_cli(*args(tmp_path / "whole", server.port), env={"CLARIFAI_PAT": KEY},
                    timeout=300)
    assert whole.returncode == 0, whole.stderr
    (resumed,) = (tmp_path / "out").glob("*/timeline.json")
    (reference,) = (tmp_path / "whole").glob("*/timeline.json")
    assert _frames_of(resumed) == _frames_of(reference)
    assert any("carried_from_ms" in f["frame_info"] for f in _frames_of(resumed))


def _frames_of(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(path.read_text())["frames"]
    return found


# -- the audit tightens the threshold ---------------------------------------------------------
class Brightness(service_pb2_grpc.V2Servicer):
    """PostModelOutputs for image inputs: each image's concepts are its mean brightness
    ("bright", 0-1) and its complement ("dark"): two frames look alike to it exactly as much
    as they are alike."""

    def PostModelOutputs(self, request: service_pb2.PostModelOutputsRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> service_pb2.MultiOutputResponse:
        ok = status_pb2.Status(code=status_code_pb2.SUCCESS)
        outputs = []
        for item in request.inputs:
            gray = Image.open(io.BytesIO(item.data.image.base64)).convert("L")
            bright = ImageStat.Stat(gray).mean[0] / 255
            outputs.append(resources_pb2.Output(status=ok, data=resources_pb2.Data(concepts=[
                resources_pb2.Concept(id="bright", name="bright", value=bright),
                resources_pb2.Concept(id="dark", name="dark", value=1 - bright)])))
        return service_pb2.MultiOutputResponse(status=ok, outputs=outputs)


@pytest.fixture
def brightness() -> Iterator[int]:
    server = grpc.server(ThreadPoolExecutor(4))
    service_pb2_grpc.add_V2Servicer_to_server(Brightness(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(grace=0)


def test_disagreeing_audits_tighten_the_threshold_for_the_rest_of_the_video(
        tmp_path: Path, brightness: int) -> None:
    """A picture brightening by 20 levels a second for 12 s, then still, with every frame
    within a threshold of 1.0: the audits of the first carried frames disagree, so from the
    instant after the third the threshold is 0.5, under which each brightening second is sent
    (a second round of requests); the still end is carried again. summary.json, timeline.json
    and the report say where it tightened, and a rerun sends nothing."""
    video = tmp_path / "ramp.mp4"
    media.ffmpeg("-f", "lavfi", "-i", "color=c=black:s=160x120:r=25,format=gray,"
                 "geq=lum='clip(10+20*T,0,255)',format=yuv420p", "-t", "24", "-c:v", "libx264",
                 "-preset", "veryfast", "-crf", "10", "-g", "25", str(video))
    out = tmp_path / "out"
    options = {"strategy": "frames", "skip_threshold": 1.0, "audit_share": 0.5,
               "report": True, **_clarifai(brightness)}
    outcome, timeline = _run(video, out, **options)
    selection = _selection(out, outcome)
    audited = [i for i in selection["sent"] if i not in selection["chosen"]]
    start = [i for i in audited if i < 10][2] + 1
    assert selection["regimes"] == [[0, 1.0], [start, 0.5]]
    assert set(range(start, 13)) <= set(selection["chosen"])
    assert outcome.audit["tightened"] == [{"from_ms": 500 + 1000 * start, "threshold": 0.5}]
    assert outcome.audit["mean_abs_diff"] > 0.03
    assert timeline["skipping"]["audit"]["tightened"] == outcome.audit["tightened"]
    chunks = json.loads((out / str(outcome.id) / "chunks.json").read_text())["chunks"]
    assert len(chunks) >= 2 and min(chunks[-1]["instants"]) > start - 1
    assert "threshold 0.5 from" in (out / str(outcome.id) / "report.html").read_text()
    assert any("carried_from_ms" in f["frame_info"] for f in timeline["frames"][17:])
    again, _ = _run(video, out, **options)
    assert again.status == "skipped" and again.frames_billed == 0


def test_plan_says_skipping_can_only_lower_the_frames_billed(talk: Path) -> None:
    """`plan` lists each strategy's frames billed without skipping, and says so."""
    shown = run_cli("plan", str(talk), "--strategy", "frames", "--skip-similar")
    assert shown.returncode == 0, shown.stderr
    assert "skipping similar frames (compact, frames) can only lower it" in shown.stdout
    plan = json.loads(run_cli("plan", str(talk), "--json").stdout)
    assert {s["strategy"]: s["frames_billed"] for s in plan["strategies"]} == {
        "copy": 30, "compact": 30, "frames": 30}
    assert "can only lower it" in plan["frames_billed_note"]
