"""Errors keep their causes and are matched by their classes: a storage or download failure is
still one sentence, and -vv shows what caused it (redacted); a bug inside a storage call is no
longer told as a storage error; library code leaves the process's garbage collector alone;
mypy knows a missing module of ours from a library that ships no types."""

from __future__ import annotations

import gc
import http.client
import os
import subprocess
import sys
import urllib.error
import uuid
from fractions import Fraction
from pathlib import Path

import media
import pytest
from batch_support import REPO, run_cli, summary
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from s3_support import FAKE_AWS, Moto

from pipeline.batch.store import RunKey, VideoStore
from pipeline.batch.transfer import Pace, Watch
from pipeline.errors import StagingError
from pipeline.send.stage import Stager
from pipeline.settings import Settings
from pipeline.types import Chunk, ChunkResult, Concept, Frame, S3Name, VideoBytes, VideoFile

pytestmark = pytest.mark.integration

SECRETS = (FAKE_AWS["AWS_SECRET_ACCESS_KEY"], FAKE_AWS["AWS_ACCESS_KEY_ID"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s video: a local input for URL mode, which must stage it."""
    return media.testsrc(tmp_path_factory.mktemp("strict") / "clip.mp4", seconds=2,
                         size="64x64", rate=5, gop=5)


@pytest.fixture
def aws_env(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's AWS settings point at moto, as a run's would."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _url_run(out: Path, clip: Path, stage: str, *extra: str) -> list[str]:
    """`run` in URL mode; the API is never reached (the staging check comes first)."""
    return ["run", str(clip), "--out", str(out), "--backend", "clarifai", "--insecure",
            "--api-base", "127.0.0.1:1", "--mode", "url", "--stage", stage, "--no-progress",
            *extra]


def test_vv_shows_the_storage_error_behind_a_configuration_error(
        tmp_path: Path, clip: Path, moto: Moto) -> None:
    """A staging bucket that does not exist: exit 2 with the one sentence as its last line; with
    -vv the log also shows botocore's ClientError as its direct cause; no AWS key anywhere."""
    bucket = f"no-such-{uuid.uuid4().hex[:8]}"
    done = run_cli(*_url_run(tmp_path / "out", clip, f"s3://{bucket}/x", "-vv"),
                   env={**moto.env(), "CLARIFAI_PAT": "k"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"video-pipeline: error: --stage: cannot use s3://{bucket}/x: bucket {bucket!r} does "
        "not exist")
    assert ("botocore.exceptions.ClientError: An error occurred (404) when calling the "
            "HeadBucket operation") in done.stderr
    assert "The above exception was the direct cause of the following exception" in done.stderr
    assert not any(secret in done.stderr for secret in SECRETS)


def test_without_vv_a_storage_error_is_one_line(tmp_path: Path, clip: Path, moto: Moto) -> None:
    """The same failure without -vv: one line, no traceback."""
    bucket = f"no-such-{uuid.uuid4().hex[:8]}"
    done = run_cli(*_url_run(tmp_path / "out", clip, f"s3://{bucket}/x"),
                   env={**moto.env(), "CLARIFAI_PAT": "k"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"video-pipeline: error: --stage: cannot use s3://{bucket}/x: bucket {bucket!r} does "
        "not exist"]


def test_an_endpoint_s_password_and_query_are_in_no_message(tmp_path: Path, clip: Path) -> None:
    """--s3-endpoint-url with user:password and a query, which botocore refuses and quotes:
    the one-line error and the -vv traceback of its cause show the URL without either."""
    endpoint = "http://user:hunter2pw@127.0.0.1:1/base?sig=abc123sig"
    done = run_cli(*_url_run(tmp_path / "out", clip, "s3://bucket/x", "--s3-endpoint-url",
                             endpoint, "-vv"), env={**FAKE_AWS, "CLARIFAI_PAT": "k"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "video-pipeline: error: --stage: cannot use s3://bucket/x: Custom endpoint "
        "`http://127.0.0.1:1/base")
    assert "botocore.exceptions.EndpointResolutionError" in done.stderr
    assert "hunter2pw" not in done.stderr and "abc123sig" not in done.stderr


def test_vv_shows_a_download_failure_s_cause_with_the_signature_redacted(tmp_path: Path) -> None:
    """A presigned URL that http.client refuses (a space in its path): the input fails with one
    sentence; -vv shows http.client's InvalidURL as the cause, its query's signature and
    credential redacted; neither is in the log or summary.json."""
    url = ("http://127.0.0.1:9/a b.mp4?X-Amz-Credential=AKIASECRETCREDENTIAL"
           "&X-Amz-Signature=0123secretsignature")
    out = tmp_path / "out"
    done = run_cli("run", url, "--out", str(out), "--backend", "local", "--no-progress", "-vv")
    assert done.returncode == 1, done.stderr
    assert "http.client.InvalidURL: URL can't contain control characters" in done.stderr
    assert "X-Amz-Signature=<redacted>" in done.stderr
    (entry,) = summary(out)["inputs"]
    assert entry["error"] == "http://127.0.0.1:9/a b.mp4: download failed: InvalidURL"
    for secret in ("AKIASECRETCREDENTIAL", "0123secretsignature"):
        assert secret not in done.stderr + done.stdout + (out / "summary.json").read_text()


def test_a_storage_failure_is_a_staging_error_that_keeps_its_cause(
        moto: Moto, aws_env: None) -> None:
    """Uploading into a bucket that does not exist, from memory and from a file: a
    StagingError naming the object, caused by what boto3 raised (its ClientError, or boto3's
    upload error over it)."""
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    name = S3Name(bucket, "stage/c.mp4")
    stager = Stager(name, endpoint_url=moto.endpoint)
    with pytest.raises(StagingError) as from_memory:
        stager.put(name, VideoBytes(b"\0" * 64))
    assert str(from_memory.value) == (
        f"cannot stage a chunk at s3://{bucket}/stage/c.mp4: bucket {bucket!r} does not exist")
    assert isinstance(from_memory.value.__cause__, ClientError)
    with pytest.raises(StagingError) as from_file:
        stager.put(name, VideoFile(__file__))
    assert str(from_file.value) == str(from_memory.value)
    assert from_file.value.__cause__ is not None
    assert isinstance(from_file.value.__cause__.__context__, ClientError)


def test_a_bug_inside_a_storage_call_is_not_told_as_a_storage_error(
        moto: Moto, aws_env: None) -> None:
    """Chunk bytes of the wrong type (a bug of ours) reach the upload: the TypeError itself is
    raised (an internal error, its traceback at -vv), not a StagingError about the bucket."""
    name = S3Name(moto.bucket(), "stage/c.mp4")
    stager = Stager(name, endpoint_url=moto.endpoint)
    with pytest.raises(TypeError):
        stager.put(name, VideoBytes("text, not bytes"))  # type: ignore[arg-type]


def test_missing_credentials_are_named_as_such(tmp_path: Path, clip: Path, moto: Moto) -> None:
    """No AWS credentials anywhere: the staging check says so by name (botocore's
    NoCredentialsError, matched by its class), exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=moto.endpoint, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true", CLARIFAI_PAT="k")
    done = subprocess.run([sys.executable, "-m", "pipeline",
                           *_url_run(tmp_path / "out", clip, "s3://any-bucket/x")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "video-pipeline: error: --stage: cannot use s3://any-bucket/x: no AWS credentials found "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws)"]


@pytest.mark.parametrize("exc", [
    TimeoutError("timed out"),  # socket.timeout is this class
    urllib.error.URLError(TimeoutError("timed out")),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:9/b/k"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:9/b/k"),
])
def test_a_timeout_is_a_stall_whoever_raised_it(exc: BaseException) -> None:
    """A socket timeout, as such or wrapped by urllib or botocore, reads as a stalled
    download."""
    found = Watch(Pace(stall=7), "http://x/v.mp4").ended(exc)
    assert str(found) == "http://x/v.mp4: download stalled: no data for 7 s (received 0 bytes)"


@pytest.mark.parametrize("exc", [ConnectionRefusedError(111, "refused"),
                                 http.client.IncompleteRead(b"")])
def test_other_network_errors_are_not_stalls(exc: BaseException) -> None:
    """A refused connection or a body cut short is not taken for a stall."""
    assert Watch(Pace(stall=7), "http://x/v.mp4").ended(exc) is None


def test_reading_saved_results_leaves_the_garbage_collector_running(tmp_path: Path) -> None:
    """A video's saved results read back (7,000 objects kept): the process's collector keeps
    collecting meanwhile; the library never turns it off."""
    store = VideoStore(tmp_path, "video", RunKey.of(Settings.from_options()))
    chunks = [Chunk(i, "", Fraction(i * 50), Fraction(i * 50 + 50), 1, 50) for i in range(20)]
    for c in chunks:
        frames = tuple(Frame((c.index * 50 + n) * 1000, tuple(
            Concept(f"id{j}", f"name{j}", (n + j) / 100) for j in range(5))) for n in range(50))
        store.save_result(c, ChunkResult(c.index, frames, 1, clock="source"))
    collections: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    assert gc.isenabled()
    gc.callbacks.append(seen)
    try:
        found = store.results(chunks)
    finally:
        gc.callbacks.remove(seen)
    assert len(found) == 20 and gc.isenabled()
    # 7,000 objects kept: a collection each 700 at least (a paused collector runs one, at the end)
    assert len(collections) >= 5, collections


def test_mypy_tells_a_missing_module_of_ours_from_an_untyped_library(tmp_path: Path) -> None:
    """With the project's mypy settings, importing a module of ours that does not exist is an
    error; importing boto3 (which ships no types) is not."""
    probe = tmp_path / "probe_imports.py"
    probe.write_text("import boto3\nfrom pipeline.send import s3\n"
                     "from pipeline.send.senders import Sender\n\nprint(boto3, s3, Sender)\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--follow-imports=silent", "--cache-dir=/dev/null", str(probe)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [f"{probe}:3: error: Cannot find implementation or library stub for module "
                      'named "pipeline.send.senders"  [import-not-found]']
