"""A real S3-compatible server for the URL-mode tests: moto's standalone server as a child
process on a free 127.0.0.1 port (`-p 0`: the OS picks it, read back from its start-up line),
and `moto_strict.py`, the same server behind a middleware that refuses expired presigned URLs
as S3 does (moto itself checks no presigned URL at all).

The server's stderr goes to a file: it writes one access-log line per request, and a pipe
nobody reads fills up and freezes it. The file is also the access log tests read. The child
gets PR_SET_PDEATHSIG through the wrapper the pipeline's own children use (`setpriv`, not a
preexec_fn: forking a process that runs gRPC threads and running Python in the child can hang
it), so a test process that is killed does not leave it running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.media.proc import dies_with_parent

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "AKIATESTTESTTEST0000",
            "AWS_SECRET_ACCESS_KEY": "test-secret-not-real-0000000000000000000",
            "AWS_DEFAULT_REGION": "us-east-1",
            # never a developer's own ~/.aws
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true"}
_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")
_HERE = Path(__file__).resolve().parent
MOTO_SERVER = [str(Path(sys.executable).with_name("moto_server"))]
# moto behind a middleware that, like S3, answers 403 to an expired presigned URL
STRICT_MOTO = [sys.executable, str(_HERE / "moto_strict.py"), "--enforce-expiry"]


@dataclass
class Moto:
    endpoint: str
    log: Path  # the server's stderr: one access-log line per request
    proc: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
            aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def env(self) -> dict[str, str]:
        """The environment a child process needs to reach this server (standard AWS names)."""
        return {**FAKE_AWS, "AWS_ENDPOINT_URL": self.endpoint}

    def bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def writes(self, bucket: str, prefix: str) -> list[str]:
        """Access-log lines of requests that wrote under bucket/prefix (PUT or POST)."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if re.search(rf'"(PUT|POST) /{bucket}/{re.escape(prefix)}', line)]


def start(argv: list[str], log: Path, timeout: float = 30.0) -> Moto:
    env = {**os.environ, **FAKE_AWS, "PYTHONUNBUFFERED": "1"}
    env.pop("MOTO_PORT", None)
    with open(log, "wb") as err:
        proc = subprocess.Popen([*dies_with_parent(), *argv, "-H", "127.0.0.1", "-p", "0"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := _RUNNING.search(log.read_text(errors="replace")):
            return Moto(found.group(1), log, proc)  # it listens before it prints the line
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop(Moto("", log, proc))
    raise RuntimeError(f"moto did not start:\n{log.read_text(errors='replace')[-2000:]}")


def stop(moto: Moto) -> None:
    if moto.proc.poll() is None:
        moto.proc.send_signal(signal.SIGTERM)  # moto exits 0 on SIGTERM
        try:
            moto.proc.wait(5)
        except subprocess.TimeoutExpired:
            moto.proc.kill()
            moto.proc.wait()
