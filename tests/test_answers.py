"""Every answer is checked before it is believed: a Clarifai-compatible server written here
answers with crafted MultiOutputResponses (no frames, NaN and Infinity, one time repeated, times
far past the chunk); the real CLI asks again once, then fails that video alone with one line.
Good answers of every shape real servers give are taken, and timeline.json never holds a
number JSON cannot read."""

from __future__ import annotations

import json
import math
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc
import media
import pytest
from batch_support import run_cli, summary
from clarifai_grpc.grpc.api import resources_pb2, service_pb2, service_pb2_grpc
from clarifai_grpc.grpc.api.status import status_code_pb2, status_pb2

from pipeline import answers
from pipeline.errors import ImplausibleAnswerError, UnwritableNumberError
from pipeline.output import timeline
from pipeline.output.exports import frames_jsonl
from pipeline.sampling import clarifai_grid
from pipeline.types import Chunk, ChunkResult, Concept, Frame, to_ms

pytestmark = pytest.mark.integration

KEY = "answers-key-31c9"
BAD_FROM = 15  # seconds: the crafted server spoils its answers for chunks at least this long
OK = status_pb2.Status(code=status_code_pb2.SUCCESS, description="Ok")

Frames = list[tuple[int, list[float]]]  # (time ms, concept values) of one answer
IMAGES = -1  # where the crafted server counts requests for image batches


def middles(seconds: Fraction, sample_ms: int) -> Frames:
    """Clarifai's answer for a video of `seconds`: the middle of each interval."""
    return [(to_ms(t), [0.9, 0.1]) for t in clarifai_grid(seconds, sample_ms).times()]


def no_frames(seconds: Fraction, sample_ms: int) -> Frames:
    return []


def no_output(seconds: Fraction, sample_ms: int) -> None:
    return None


def nan_and_infinity(seconds: Fraction, sample_ms: int) -> Frames:
    good = middles(seconds, sample_ms)
    return [(good[0][0], [math.nan, 0.1]), (good[1][0], [math.inf, 0.1]), *good[2:]]


def one_time(seconds: Fraction, sample_ms: int) -> Frames:
    return [(500, values) for _, values in middles(seconds, sample_ms)]


def far_past(seconds: Fraction, sample_ms: int) -> Frames:
    good = middles(seconds, sample_ms)
    return [*good[:-1], (10_000_000, good[-1][1])]


class Crafted(service_pb2_grpc.V2Servicer):
    """PostModelOutputs for one video input: each interval's middle, as Clarifai answers, except
    that a video of BAD_FROM seconds or more gets `spoiled`'s frames (no output at all for
    None) for its first `spoil` requests. A batch of images gets one output too few. Requests
    are counted by the video's length (whole seconds), or at IMAGES."""

    def __init__(self, spoiled: Callable[[Fraction, int], Frames | None],
                 spoil: int = 1_000) -> None:
        self.spoiled = spoiled
        self.spoil = spoil
        self.requests: dict[int, int] = {}
        self._lock = threading.Lock()

    def PostModelOutputs(self, request: service_pb2.PostModelOutputsRequest,  # noqa: N802
                         context: grpc.ServicerContext) -> service_pb2.MultiOutputResponse:
        if request.inputs[0].data.HasField("image"):
            self._count(IMAGES)
            return service_pb2.MultiOutputResponse(status=OK, outputs=[resources_pb2.Output(
                status=OK, data=resources_pb2.Data(concepts=_frame(0, [0.9, 0.1]).data.concepts))
                for _ in request.inputs[1:]])
        sample_ms = request.model.model_version.output_info.output_config.sample_ms
        seconds = _length(request.inputs[0].data.video.base64)
        bad = self._count(round(seconds)) <= self.spoil and seconds >= BAD_FROM
        frames = (self.spoiled if bad else middles)(seconds, sample_ms)
        if frames is None:
            return service_pb2.MultiOutputResponse(status=OK)
        return service_pb2.MultiOutputResponse(status=OK, outputs=[resources_pb2.Output(
            status=OK, data=resources_pb2.Data(frames=[_frame(t, v) for t, v in frames]))])

    def _count(self, where: int) -> int:
        with self._lock:
            seen = self.requests[where] = self.requests.get(where, 0) + 1
        return seen


def _length(video: bytes) -> Fraction:
    """The video stream's length, as ffprobe reads it (to the millisecond)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as fh:
        fh.write(video)
        fh.flush()
        return Fraction(round(media.ffprobe_duration(fh.name) * 1000), 1000)


def _frame(time_ms: int, values: list[float]) -> resources_pb2.Frame:
    concepts = [resources_pb2.Concept(id=f"c{i}", name=name, value=v)
                for i, (name, v) in enumerate(zip(("sfw", "nsfw"), values, strict=True))]
    return resources_pb2.Frame(frame_info=resources_pb2.FrameInfo(time=time_ms),
                               data=resources_pb2.Data(concepts=concepts))


@pytest.fixture
def crafted() -> Iterator[Callable[..., tuple[Crafted, int]]]:
    """Start a crafted server on 127.0.0.1; (its servicer, its port)."""
    servers: list[grpc.Server] = []

    def start(spoiled: Callable[[Fraction, int], Frames | None], spoil: int = 1_000,
              ) -> tuple[Crafted, int]:
        servicer = Crafted(spoiled, spoil)
        server = grpc.server(ThreadPoolExecutor(4))
        service_pb2_grpc.add_V2Servicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, port

    yield start
    for server in servers:
        server.stop(grace=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bad.mp4: 26 s, cut at 20 s (chunk 0 is the one the crafted server spoils); good.mp4: 6 s,
    one chunk. 160x120, 1 s keyframe intervals."""
    folder = tmp_path_factory.mktemp("answers") / "videos"
    folder.mkdir()
    media.testsrc(folder / "bad.mp4", seconds=26, size="160x120", rate=25, gop=25)
    media.testsrc(folder / "good.mp4", seconds=6, size="160x120", rate=25, gop=25)
    return folder


def _run(videos: Path, out: Path, port: int, *flags: str) -> Any:
    return run_cli("run", str(videos), "--out", str(out), "--backend", "clarifai", "--insecure",
                   "--api-base", f"127.0.0.1:{port}", "--max-seconds", "20", "--no-progress",
                   "--concurrency", "1", *flags, env={"CLARIFAI_PAT": KEY}, timeout=300)


def _strict_json(path: Path) -> Any:
    """JSON as the standard reads it: NaN and Infinity are not numbers."""
    def refuse(name: str) -> None:
        raise ValueError(f"{path.name} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


SPOILED = [
    (no_frames, r"0 frames for a 20\.0 s chunk sampled every 1000 ms \(expected 20\)"),
    (nan_and_infinity, r"concept 'sfw' at 500 ms is nan, not a value from 0 to 1"),
    (one_time, r"20 frames at 1 distinct time \(500 ms given 20 times\)"),
    (far_past, r"a frame at 10000000 ms, outside the 20\.0 s chunk"),
    (no_output, r"no outputs"),
]


@pytest.mark.parametrize(("spoiled", "problem"), SPOILED, ids=[s.__name__ for s, _ in SPOILED])
def test_an_implausible_answer_is_asked_again_once_then_fails_its_video_alone(
        videos: Path, tmp_path: Path, crafted: Callable[..., tuple[Crafted, int]],
        spoiled: Callable[[Fraction, int], Frames], problem: str) -> None:
    """The spoiled chunk is sent twice, then its video fails with one line naming the problem;
    the other video is done, the run exits 1, the failed video has no timeline.json and
    summary.json is standard JSON."""
    servicer, port = crafted(spoiled)
    out = tmp_path / "out"
    done = _run(videos, out, port)
    assert done.returncode == 1, done.stderr
    assert servicer.requests[20] == 2
    entries = {Path(e["source"]).name: e for e in _strict_json(out / "summary.json")["inputs"]}
    assert entries["good.mp4"]["status"] == "done"
    bad = entries["bad.mp4"]
    assert bad["status"] == "failed" and "\n" not in bad["error"]
    assert re.fullmatch(rf".*bad\.mp4: chunk 0: implausible answer: {problem}", bad["error"])
    assert not (out / bad["id"] / "timeline.json").exists()
    assert "Traceback" not in done.stderr
    _strict_json(out / entries["good.mp4"]["id"] / "timeline.json")


def test_a_batch_of_images_answered_with_an_output_missing_is_asked_again_once(
        videos: Path, tmp_path: Path, crafted: Callable[..., tuple[Crafted, int]]) -> None:
    """--strategy frames: a server that answers 6 images with 5 outputs is asked once more,
    then the video fails with one line saying so."""
    servicer, port = crafted(middles)
    out = tmp_path / "out"
    done = _run(videos / "good.mp4", out, port, "--strategy", "frames")
    assert done.returncode == 1, done.stderr
    assert servicer.requests[IMAGES] == 2
    (entry,) = _strict_json(out / "summary.json")["inputs"]
    assert entry["error"].endswith("good.mp4: chunk 0: implausible answer: 5 outputs for 6 "
                                   "images")
    assert entry["requests"] == 2


def test_an_answer_refused_once_and_then_plausible_is_taken(
        videos: Path, tmp_path: Path, crafted: Callable[..., tuple[Crafted, int]]) -> None:
    """A server that answers a chunk with no frames once, then properly: both videos are done,
    the chunk took two requests and the summary counts them."""
    servicer, port = crafted(no_frames, spoil=1)
    out = tmp_path / "out"
    done = _run(videos, out, port)
    assert done.returncode == 0, done.stderr
    assert servicer.requests[20] == 2
    entries = {Path(e["source"]).name: e for e in summary(out)["inputs"]}
    assert entries["bad.mp4"]["status"] == "done"
    assert entries["bad.mp4"]["requests"] == entries["bad.mp4"]["chunks"] + 1
    frames = _strict_json(out / entries["bad.mp4"]["id"] / "timeline.json")["frames"]
    assert [f["frame_info"]["time"] for f in frames] == [500 + 1000 * k for k in range(26)]


@pytest.fixture(scope="module")
def held_still(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of Matroska, variable frame rate: frames for 0-3 s, none for 3-6 s (the frame at
    2.97 s is held for 3 s), frames again from 6 s; a keyframe every 30 frames (0, 1, 2, 6, 7,
    ... s)."""
    path = tmp_path_factory.mktemp("held") / "held.mkv"
    media.testsrc(path, seconds=12, size="160x120", rate=30,
                  extra_vf="select='lt(n\\,90)+gte(n\\,180)'",
                  codec=["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                         "-g", "30"],
                  out_args=["-fps_mode", "vfr"])
    return path


def test_a_real_servers_answer_for_a_chunk_ending_in_a_held_frame_is_taken(
        held_still: Path, tmp_path: Path, serve: Callable[..., Any]) -> None:
    """The chunk [2, 6) s ends in a frame held for 3 s that its MP4 says lasts one frame: the
    file lasts 1 s, so `serve` samples one instant of it, not four. That is what a server sees
    of it: the video is done, with no instant in the held stretch."""
    server = serve()
    out = tmp_path / "out"
    done = run_cli("run", str(held_still), "--out", str(out), "--backend", "clarifai",
                   "--insecure", "--api-base", f"127.0.0.1:{server.port}", "--max-seconds", "4.5",
                   "--no-progress", env={"CLARIFAI_PAT": KEY}, timeout=300)
    assert done.returncode == 0, done.stderr
    (entry,) = summary(out)["inputs"]
    chunks = json.loads((out / entry["id"] / "chunks.json").read_text())["chunks"]
    start, end = chunks[1]["start_ms"], chunks[1]["end_ms"]
    assert (start, end) == (2000, 6000), chunks
    frames = _strict_json(out / entry["id"] / "timeline.json")["frames"]
    assert [f["frame_info"]["time"] for f in frames if start <= f["frame_info"]["time"] < end] \
        == [2500]


# -- the check itself (pure), on the shapes real servers answer with ------------------------

def chunk(start: str, end: str, *, index: int = 3, packets: tuple[int, int] | None = (0, 1),
          path: str = "chunk.mp4") -> Chunk:
    return Chunk(index, path, Fraction(start), Fraction(end), 1, 1, packets=packets)


def result(*times: int, clock: Any = "chunk", value: float = 0.5) -> ChunkResult:
    return ChunkResult(3, tuple(Frame(t, (Concept("c", "sfw", value),)) for t in times),
                       clock=clock)


def test_the_answers_real_servers_give_are_taken() -> None:
    """Middles of each interval, the older convention's interval starts (one more frame), a
    short chunk's single middle past its end, a local answer of no frame for a chunk between
    two instants, and a chunk whose file the server measures shorter by up to an interval."""
    twenty = chunk("0", "20")
    answers.check(twenty, result(*range(500, 20_000, 1000)), 1000)
    answers.check(chunk("0", "41/2"), result(*range(0, 20_500, 1000)), 1000)  # 21 starts
    answers.check(chunk("10", "10133/1000", packets=None), result(500), 1000)
    answers.check(chunk("3", "3.2"), result(clock="instants"), 1000)
    answers.check(chunk("10", "14"), result(0, 1, 2, 3, clock="instants"), 1000)
    short = chunk("0", "11/5", packets=None)  # its file says 2.133 s: one frame fewer
    answers.check(short, result(*range(167, 2_000, 333)), 333, span=Fraction(2133, 1000))


def test_a_server_that_measures_a_chunk_by_its_file_may_answer_up_to_the_files_end() -> None:
    """A chunk cut before a frame held for 3 s: its file (and so the server) ends about 1 s
    in; an answer for that second is taken, one for a single frame of a 4 s chunk whose file
    says 4 s is not."""
    held = chunk("2", "6", packets=None)
    answers.check(held, result(500), 1000, span=Fraction(1033, 1000))
    with pytest.raises(ImplausibleAnswerError, match="1 frame for a 4.0 s chunk"):
        answers.check(held, result(500), 1000, span=Fraction(4))


@pytest.mark.parametrize(("answer", "problem"), [
    (result(*range(500, 22_500, 1000)), "22 frames for a 20.0 s chunk sampled every 1000 ms "
                                        "(expected 20)"),
    (result(*range(500, 20_000, 1000), value=-0.25), "concept 'sfw' at 500 ms is -0.25"),
    (result(*range(500, 20_000, 1000), value=1.5), "concept 'sfw' at 500 ms is 1.5"),
    (result(-500, *range(500, 19_000, 1000)), "a frame at -500 ms, outside the 20.0 s chunk"),
    (result(*range(500, 19_000, 1000), 21_000), "a frame at 21000 ms, outside the 20.0 s chunk"),
])
def test_an_answer_the_chunk_cannot_give_is_refused_naming_the_problem(
        answer: ChunkResult, problem: str) -> None:
    """Frames beyond the grid, values outside [0, 1], a time before the chunk or a whole
    interval past its end: refused with one line that starts with the chunk."""
    with pytest.raises(ImplausibleAnswerError) as refused:
        answers.check(chunk("0", "20"), answer, 1000)
    assert str(refused.value).startswith(f"chunk 3: implausible answer: {problem}")


def test_an_answer_by_instant_must_answer_each_of_the_chunks_instants_once() -> None:
    """A local answer (or an image batch's) for the chunk [60, 64) s answers its four instants,
    each once: one missing, one past the fourth, or one given twice is refused."""
    placed = chunk("60", "64")
    answers.check(placed, result(0, 1, 2, 3, clock="instants"), 1000)
    with pytest.raises(ImplausibleAnswerError, match="3 frames for a 4.0 s chunk"):
        answers.check(placed, result(0, 1, 2, clock="instants"), 1000)
    with pytest.raises(ImplausibleAnswerError, match="instant 4 of a chunk holding 4"):
        answers.check(placed, result(0, 1, 2, 4, clock="instants"), 1000)
    with pytest.raises(ImplausibleAnswerError, match=r"\(instant 2 given 2 times\)"):
        answers.check(placed, result(0, 1, 2, 2, clock="instants"), 1000)


# -- timeline.json never holds a number JSON cannot read ------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_json_cannot_spell_is_refused_not_written(value: float) -> None:
    """NaN and the infinities stop timeline.json and frames.jsonl from being written, with
    an error that names the value."""
    frames = [Frame(500, (Concept("c", "sfw", value),))]
    with pytest.raises(UnwritableNumberError, match=re.escape(repr(value))):
        "".join(timeline.pieces({"sample_ms": 1000}, frames, {}))
    with pytest.raises(UnwritableNumberError):
        "".join(frames_jsonl(frames))


def test_finite_values_are_written_as_json_dumps_writes_them() -> None:
    """The exact format is kept: repr of each finite float, as json.dumps gives."""
    frames = [Frame(500, (Concept("c", "sfw", 0.1), Concept("d", "nsfw", 1e-07)))]
    text = "".join(timeline.pieces({"sample_ms": 1000}, frames, {}))
    assert text == json.dumps({"sample_ms": 1000, "frames": [
        {"frame_info": {"index": 0, "time": 500}, "data": {"concepts": [
            {"id": "c", "name": "sfw", "value": 0.1},
            {"id": "d", "name": "nsfw", "value": 1e-07}]}}]}, indent=2) + "\n"

