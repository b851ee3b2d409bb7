"""S3-compatible object storage through boto3: names (s3://bucket/key), one client per endpoint
and process, and failures told in one sentence that names the bucket and key.

boto3 finds the endpoint and credentials itself, from the standard AWS settings
(AWS_ENDPOINT_URL, AWS_PROFILE and ~/.aws, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, an instance role); `--s3-endpoint-url` overrides the endpoint. That is the one
place where something other than the command line reads the environment, by design: it is how
every AWS tool is configured, and the keys then never pass through our settings."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from pipeline.types import S3Name

# botocore logs the Authorization header, session tokens and presigning's canonical request
# (enough to rebuild a presigned URL) at DEBUG; `-vv` must never show them.
_NOISY = ("boto3", "botocore", "s3transfer", "urllib3")
_LOCK = threading.Lock()


def quiet_loggers() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.lru_cache(maxsize=8)
def client(endpoint_url: str | None, timeout: float = 60.0) -> Any:
    """The process's S3 client for `endpoint_url` (None: boto3's own choice). Clients are
    thread-safe and cost ~0.3 s to make, so one is shared; path-style addressing (bucket in the
    path) works with any endpoint, IP addresses and MinIO included; SigV4, because botocore
    would presign with SigV2 otherwise, which most regions refuse. A connection or a read
    waits `timeout` seconds at most, and a call is tried 5 times at most."""
    quiet_loggers()
    with _LOCK:  # boto3's default session is not thread-safe to create
        import boto3
        from botocore.config import Config
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": 5, "mode": "standard"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def failure(exc: BaseException, doing: str, name: S3Name, *, bucket: bool = False) -> str:
    """One sentence for a failed storage call: what was done, to which object (`bucket`: a
    call on the bucket itself), and why (never a credential: botocore's messages carry the
    code and the endpoint, not the keys)."""
    code = _code(exc)
    if code in ("404", "NoSuchBucket"):
        why = f"bucket {name.bucket!r} does not exist" if code == "NoSuchBucket" or bucket \
            else "no such object"
    elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        why = f"access denied ({code}); check the AWS credentials and the bucket's policy"
    elif type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        why = ("no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
               "AWS_PROFILE or ~/.aws)")
    elif code:
        why = f"{code}: {_message(exc)}"
    else:
        why = str(exc) or type(exc).__name__
    return f"{doing} {name}: {why}"


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    cause = exc.__cause__ or exc.__context__
    return _code(cause) if cause is not None and cause is not exc else ""


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def missing(exc: BaseException) -> bool:
    """The object (or bucket) is not there."""
    return _code(exc) in ("404", "NoSuchKey", "NoSuchBucket")
