"""URL mode against a real S3-compatible server (moto, on 127.0.0.1) and `serve
--allow-local-urls`: chunks staged and sent as presigned URLs, the bucket left clean (after a
SIGKILL too), URL sources sent by reference, expired URLs staged again, and no credential or
query string in any log or output."""

from __future__ import annotations

import json
import logging
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import media
import pytest
from batch_support import MAX_BYTES, cli, make_video, run_cli, summary, wait_for
from s3_support import FAKE_AWS, MOTO_SERVER, STRICT_MOTO, Moto, start, stop

from pipeline import redact
from pipeline._cli.main import main
from pipeline.backends.clarifai_status import classify
from pipeline.batch import remote
from pipeline.batch.runner import Runner
from pipeline.errors import FetchFailedError
from pipeline.probe import probe
from pipeline.serve.inputs import InputLimits
from pipeline.serve.server import Server
from pipeline.settings import Settings
from pipeline.types import Chunk

pytestmark = [pytest.mark.integration, pytest.mark.s3, pytest.mark.dask,
              pytest.mark.slow]

KEY = "test-key-url-mode"
SECRETS = (FAKE_AWS["AWS_SECRET_ACCESS_KEY"], FAKE_AWS["AWS_ACCESS_KEY_ID"], "X-Amz-Signature",
           "X-Amz-Credential", KEY)


@pytest.fixture(scope="module")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto that refuses expired presigned URLs, as S3 does."""
    server = start(STRICT_MOTO, tmp_path_factory.mktemp("moto-strict") / "moto.log")
    yield server
    stop(server)


@pytest.fixture
def aws_env(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's AWS settings point at moto (boto3 reads them, as in a real run)."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto.env()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """main() sets up the root logger (-vv: DEBUG); put it back for the tests after."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    logging.getLogger("pipeline").setLevel(logging.NOTSET)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s, 320x240, ~450 kB, 1 s GOPs: fits the URL limits whole, several chunks at 200 kB."""
    return make_video(tmp_path_factory.mktemp("url") / "clip.mp4", seconds=12, hue=120)


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1100 s at 1 frame/s, 64x64 (~300 kB): far under 80 MB, but over ten minutes."""
    return media.testsrc(tmp_path_factory.mktemp("url-slow") / "slow.mp4", seconds=1100,
                   size="64x64", rate=1, gop=10)


@pytest.fixture
def api(serve: Callable[..., Server]) -> Server:
    """`serve --allow-local-urls`: it fetches the presigned URLs from moto on 127.0.0.1."""
    return serve(limits=InputLimits(allow_local_urls=True, url_timeout=10))


def url_args(out: Path, *inputs: str, server: Server, stage: str | None = None,
             extra: tuple[str, ...] = ()) -> list[str]:
    args = ["run", *inputs, "--out", str(out), "--backend", "clarifai", "--insecure",
            "--api-base", f"127.0.0.1:{server.port}", "--mode", "url", "--no-progress", *extra]
    return args + (["--stage", stage] if stage else [])


def requests(server: Server) -> list[dict[str, Any]]:
    assert server.config.request_log is not None
    log = Path(server.config.request_log)
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def timeline(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(next(out.glob("*/timeline.json")).read_text())
    return found


def outputs_text(out: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in out.rglob("*.json"))


def test_chunks_are_staged_sent_as_urls_and_removed(tmp_path: Path, clip: Path, moto: Moto,
                                                    api: Server) -> None:
    """A local video in URL mode: each chunk is uploaded under --stage and the API gets only
    its presigned URL; the prefix is empty afterwards; the timeline equals a bytes-mode run's;
    no credential or query string is in the log (-vv), summary.json or timeline.json."""
    bucket = moto.bucket()
    out = tmp_path / "url"
    done = run_cli(*url_args(out, str(clip), server=api, stage=f"s3://{bucket}/stage/",
                             extra=("--max-bytes", MAX_BYTES, "-vv")),
                   env={**moto.env(), "CLARIFAI_PAT": KEY})
    assert done.returncode == 0, done.stderr
    chunks = timeline(out)["chunks"]
    assert len(chunks) > 1 and all(c["size_bytes"] <= int(MAX_BYTES) for c in chunks)
    assert {r["kind"] for r in requests(api)} == {"video-url"}
    assert len(moto.writes(bucket, "stage/")) >= len(chunks)  # every chunk was staged
    assert moto.keys(bucket) == []
    for secret in SECRETS:
        assert secret not in done.stderr + done.stdout + outputs_text(out), secret
    reference = tmp_path / "bytes"
    assert main(["run", str(clip), "--out", str(reference), "--backend", "clarifai",
                 "--insecure", "--api-base", f"127.0.0.1:{api.port}", "--max-bytes", MAX_BYTES,
                 "--no-progress"], {"CLARIFAI_PAT": KEY}) == 0
    assert timeline(out)["frames"] == timeline(reference)["frames"]


def test_compact_chunks_are_staged_and_frames_go_as_image_bytes(
        tmp_path: Path, clip: Path, moto: Moto, api: Server) -> None:
    """URL mode carries each strategy's own media: compact's proxy chunk is staged and sent as
    a presigned URL (the prefix empty afterwards); frames' JPEGs are image inputs sent as
    bytes (an image by URL would be a request per image), nothing staged."""
    bucket = moto.bucket()
    env = {**moto.env(), "CLARIFAI_PAT": KEY}
    compact = tmp_path / "compact"
    done = run_cli(*url_args(compact, str(clip), server=api, stage=f"s3://{bucket}/stage/",
                             extra=("--strategy", "compact")), env=env)
    assert done.returncode == 0, done.stderr
    assert [r["kind"] for r in requests(api)] == ["video-url"]
    assert len(moto.writes(bucket, "stage/")) == 1 and moto.keys(bucket) == []
    frames = tmp_path / "frames"
    done = run_cli(*url_args(frames, str(clip), server=api, stage=f"s3://{bucket}/stage2/",
                             extra=("--strategy", "frames")), env=env)
    assert done.returncode == 0, done.stderr
    sent = requests(api)[1:]
    assert len(sent) == 1 and sent[0]["kind"].startswith("image-bytes")
    assert moto.writes(bucket, "stage2/") == [] and moto.keys(bucket) == []
    times = [[f["frame_info"]["time"] for f in timeline(out)["frames"]]
             for out in (compact, frames)]
    assert times[0] == times[1] == list(range(500, 12_000, 1000))


def test_ten_minutes_binds_for_a_low_bit_rate_video(tmp_path: Path, slow_clip: Path,
                                                    moto: Moto, api: Server,
                                                    aws_env: dict[str, str]) -> None:
    """With the URL defaults (80,000,000 bytes, 600 s) an 1100 s video of 300 kB becomes two
    chunks of at most ten minutes, which serve (Clarifai's limits) accepts."""
    bucket = moto.bucket()
    out = tmp_path / "out"
    assert main(url_args(out, str(slow_clip), server=api, stage=f"s3://{bucket}/s",
                         extra=("--sample-ms", "60000", "--s3-endpoint-url", moto.endpoint)),
                {"CLARIFAI_PAT": KEY}) == 0
    found = timeline(out)
    assert found["limits"] == {"mode": "url", "max_bytes": 80_000_000, "max_duration_ms": 600_000}
    assert [c["end_ms"] - c["start_ms"] <= 600_000 for c in found["chunks"]] == [True, True]
    assert [r["status"] for r in requests(api)] == [10000, 10000]
    assert moto.keys(bucket) == []


def test_url_mode_with_nowhere_to_stage_is_exit_2(tmp_path: Path, clip: Path, moto: Moto,
                                                  api: Server) -> None:
    """--mode url, a local file and no --stage: one line naming --stage, exit 2, nothing sent
    (never the chunks as bytes); a bucket that does not exist: the same, before any request."""
    no_stage = run_cli(*url_args(tmp_path / "a", str(clip), server=api),
                       env={"CLARIFAI_PAT": KEY})
    assert no_stage.returncode == 2 and "--stage" in no_stage.stderr
    missing = run_cli(*url_args(tmp_path / "b", str(clip), server=api,
                                stage="s3://no-such-bucket-here/x"),
                      env={**moto.env(), "CLARIFAI_PAT": KEY})
    assert missing.returncode == 2, missing.stderr
    assert "no-such-bucket-here" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in no_stage.stderr + missing.stderr
    assert requests(api) == [] and not (tmp_path / "a").exists()


def test_a_bucket_that_refuses_us_is_exit_2(tmp_path: Path, clip: Path, api: Server,
                                            aws_env: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Storage that answers 403 to our keys: the run stops at the start, exit 2, naming the
    bucket and saying access was denied, with no credential in the message."""
    refusing = start(MOTO_SERVER, tmp_path / "moto.log")
    try:
        bucket = refusing.bucket()
        request = urllib.request.Request(f"{refusing.endpoint}/moto-api/reset-auth", data=b"0",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request).close()  # moto's IAM now knows none of our keys
        code = main(url_args(tmp_path / "out", str(clip), server=api,
                             stage=f"s3://{bucket}/stage",
                             extra=("--s3-endpoint-url", refusing.endpoint)),
                    {"CLARIFAI_PAT": KEY})
    finally:
        stop(refusing)
    err = capsys.readouterr().err
    assert code == 2 and bucket in err and "access denied" in err, err
    assert not any(secret in err for secret in SECRETS) and requests(api) == []


def test_an_expired_url_is_staged_again_and_retried(
        tmp_path: Path, clip: Path, strict_moto: Moto, api: Server, aws_env: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Storage that refuses expired URLs (403, as S3): the chunk's first URL has expired when
    the API fetches it (INPUT_VIDEO_DOWNLOAD_FAILED); it is staged again with a fresh URL and
    the retry succeeds; the log names the object, never the URL."""
    bucket = strict_moto.bucket()
    settings = Settings.from_options(backend="clarifai", mode="url", stage=f"s3://{bucket}/stage",
                        s3_endpoint_url=strict_moto.endpoint, api_base=f"127.0.0.1:{api.port}",
                        insecure=True, api_key=KEY, progress=False)
    made: list[int] = []

    def lifetime(chunk: Chunk, n: int) -> float:
        made.append(n)
        return 0 if n == 0 else 600  # the first URL is stale before it is sent

    runner = Runner(settings, str(tmp_path / "out"), url_lifetime=lifetime)
    (outcome,) = runner.run([str(clip)])
    assert outcome.status == "done", outcome.error
    assert [r["status"] for r in requests(api)] == [31002, 10000]
    assert made == [0, 1] and timeline(tmp_path / "out")["chunks"][0]["attempts"] == 2
    assert strict_moto.keys(bucket) == []
    assert f"s3://{bucket}/stage/" in caplog.text
    assert not any(secret in caplog.text for secret in SECRETS)


def test_an_object_that_fits_is_sent_by_reference(tmp_path: Path, clip: Path, moto: Moto,
                                                  api: Server, aws_env: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str],
                                                  root_logging: None) -> None:
    """s3://bucket/key (and a presigned http URL of it) that fit the URL limits as they are:
    the API gets the object's own URL; nothing is written under the staging prefix; the query
    string is in no output and no log line (-vv)."""
    bucket = moto.bucket()
    s3 = moto.client()
    s3.upload_file(str(clip), bucket, "videos/clip.mp4")
    s3.copy_object(Bucket=bucket, Key="videos/other.mp4",
                   CopySource={"Bucket": bucket, "Key": "videos/clip.mp4"})
    presigned = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "videos/other.mp4"}, ExpiresIn=600)
    out = tmp_path / "out"
    assert main(url_args(out, f"s3://{bucket}/videos/clip.mp4", presigned, server=api,
                         stage=f"s3://{bucket}/stage",
                         extra=("--s3-endpoint-url", moto.endpoint, "-vv")),
                {"CLARIFAI_PAT": KEY}) == 0
    logged = capsys.readouterr().err
    assert "probed by ranged reads" in logged
    assert not any(secret in logged for secret in SECRETS)
    assert [e["status"] for e in summary(out)["inputs"]] == ["done", "done"]
    assert moto.writes(bucket, "stage") == [] and moto.keys(bucket, "stage") == []
    assert [(r["kind"], r["status"]) for r in requests(api)] == [("video-url", 10000)] * 2
    paths = sorted(json.loads(p.read_text())["source"]["path"]
                   for p in out.glob("*/timeline.json"))
    assert paths == [redact.url(presigned), f"s3://{bucket}/videos/clip.mp4"]
    assert "X-Amz-" not in outputs_text(out)


def test_probing_an_object_reads_its_index_not_its_media(tmp_path: Path, clip: Path,
                                                         moto: Moto,
                                                         aws_env: dict[str, str]) -> None:
    """An MP4 whose moov is at the end: ranged reads of a few kB give the same video facts as
    probing the local file."""
    bucket = moto.bucket()
    moto.client().upload_file(str(clip), bucket, "clip.mp4")
    source = remote.resolve(f"s3://{bucket}/clip.mp4", endpoint_url=moto.endpoint, timeout=10)
    info = source.probe()
    local = probe(str(clip))
    assert info is not None and local.scan is not None and info.scan is not None
    assert (info.size_bytes, info.duration_ms, len(info.scan.video)) == \
        (local.size_bytes, local.duration_ms, len(local.scan.video))
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 240)
    assert source.read_bytes < local.size_bytes // 4


def test_an_object_that_must_be_cut_works_in_both_modes(tmp_path: Path, clip: Path, moto: Moto,
                                                        api: Server,
                                                        aws_env: dict[str, str]) -> None:
    """s3://bucket/key over --max-bytes: downloaded once, cut, and its chunks staged (URL
    mode) or sent as bytes (bytes mode): the same frames; the prefix is empty afterwards."""
    bucket = moto.bucket()
    moto.client().upload_file(str(clip), bucket, "in/clip.mp4")
    source = f"s3://{bucket}/in/clip.mp4"
    common = ("--max-bytes", MAX_BYTES, "--s3-endpoint-url", moto.endpoint)
    staged, sent = tmp_path / "url", tmp_path / "bytes"
    assert main(url_args(staged, source, server=api, stage=f"s3://{bucket}/stage",
                         extra=common), {"CLARIFAI_PAT": KEY}) == 0
    assert main([*url_args(sent, source, server=api, extra=common), "--mode", "bytes"],
                {"CLARIFAI_PAT": KEY}) == 0
    assert len(timeline(staged)["chunks"]) > 1
    assert timeline(staged)["frames"] == timeline(sent)["frames"]
    assert moto.keys(bucket) == ["in/clip.mp4"]


def test_sigkill_mid_run_then_a_rerun_leaves_the_bucket_clean(
        tmp_path: Path, clip: Path, moto: Moto, serve: Callable[..., Server]) -> None:
    """Killed (SIGKILL) while chunks are staged, the run leaves objects (and unfinished
    uploads) behind; the rerun removes them, finishes, and leaves everything else in the bucket
    alone."""
    slow = serve(limits=InputLimits(allow_local_urls=True), latency_ms=700)
    bucket = moto.bucket()
    s3 = moto.client()
    for key in ("keep.txt", "stage/other-run/keep.mp4"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"not ours")
    args = url_args(tmp_path / "out", str(clip), server=slow, stage=f"s3://{bucket}/stage",
                    extra=("--max-bytes", MAX_BYTES, "--concurrency", "2"))
    env = {**moto.env(), "CLARIFAI_PAT": KEY}
    first = cli(*args, env=env)
    wait_for(lambda: len([k for k in moto.keys(bucket, "stage/") if "other-run" not in k]) > 0,
             60, "a chunk staged")
    first.send_signal(signal.SIGKILL)
    first.wait()
    ours = [k for k in moto.keys(bucket, "stage/") if "other-run" not in k]
    assert ours, "the killed run left nothing staged"
    folder = ours[0].rsplit("/", 1)[0]  # stage/VIDEO_ID/<the --out folder's hash>
    for key in (f"{folder}/chunk-cut-short.mp4", "stage/other-run/big.mp4"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)  # as a kill mid-upload leaves one
    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert moto.keys(bucket) == ["keep.txt", "stage/other-run/keep.mp4"]
    unfinished = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in unfinished] == ["stage/other-run/big.mp4"]


def test_download_failures_mean_a_fresh_url_and_messages_hide_signatures() -> None:
    """The API's download-failed codes are retried with a fresh URL; a message quoting a
    presigned URL keeps its path and loses its query string."""
    assert isinstance(classify(31002, "x", "m"), FetchFailedError)
    assert isinstance(classify(30002, "x", "m"), FetchFailedError)
    text = ("could not download http://127.0.0.1:9/b/k.mp4?X-Amz-Algorithm=AWS4&"
            "X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc: HTTP Error 403")
    assert redact.text(text) == "could not download http://127.0.0.1:9/b/k.mp4: HTTP Error 403"
    assert "abc" not in redact.text("?X-Amz-Signature=abc&x=1")



def test_dask_workers_stage_their_own_chunks(
        tmp_path: Path, clip: Path, moto: Moto, api: Server, aws_env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--dask local:1: the client checks the bucket; the worker reads an s3:// source, cuts it,
    stages its chunks with its own AWS settings, and leaves the prefix empty."""
    monkeypatch.setenv("CLARIFAI_PAT", KEY)  # a worker reads its own key, as on a cluster
    bucket = moto.bucket()
    moto.client().upload_file(str(clip), bucket, "in/clip.mp4")
    out = tmp_path / "out"
    assert main(url_args(out, f"s3://{bucket}/in/clip.mp4", server=api,
                         stage=f"s3://{bucket}/stage",
                         extra=("--max-bytes", MAX_BYTES, "--dask", "local:1")),
                {"CLARIFAI_PAT": KEY}) == 0
    assert summary(out)["counts"]["done"] == 1 and len(timeline(out)["chunks"]) > 1
    assert len(moto.writes(bucket, "stage/")) >= len(timeline(out)["chunks"])
    assert moto.keys(bucket) == ["in/clip.mp4"]
