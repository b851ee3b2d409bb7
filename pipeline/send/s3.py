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
from collections.abc import Iterable, Mapping
from typing import IO, Any, Protocol

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from pipeline import redact
from pipeline.types import S3Name

# botocore logs the Authorization header, session tokens and presigning's canonical request
# (enough to rebuild a presigned URL) at DEBUG; `-vv` must never show them.
_NOISY = ("boto3", "botocore", "s3transfer", "urllib3")
_LOCK = threading.Lock()
# What a call on the client raises: a refusal by the storage (ClientError), or botocore's own
# failures (no credentials, a connection refused or timed out, a bad parameter: BotoCoreError),
# or the system's (a file to upload that cannot be read, a socket error: OSError).
ERRORS = (BotoCoreError, ClientError, OSError)


class Pages(Protocol):
    # A page is a listing's JSON answer, as boto3 gives it: a dict of whatever the API sends.
    def paginate(self, **params: str) -> Iterable[dict[str, Any]]: ...


class Client(Protocol):
    """The methods of boto3's S3 client this package calls (boto3 ships no types). Answers
    are the API's JSON as dicts (Any: whatever the API sends); keyword names are boto3's."""

    def head_bucket(self, *, Bucket: str) -> object: ...
    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]: ...
    def get_object(self, *, Bucket: str, Key: str, **params: str) -> dict[str, Any]: ...
    def upload_fileobj(self, fileobj: IO[bytes], bucket: str, key: str, *,
                       ExtraArgs: Mapping[str, str], Config: object) -> None: ...
    def upload_file(self, filename: str, bucket: str, key: str, *,
                    ExtraArgs: Mapping[str, str], Config: object) -> None: ...
    def delete_object(self, *, Bucket: str, Key: str) -> object: ...
    def delete_objects(self, *, Bucket: str, Delete: Mapping[str, object]) -> object: ...
    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> object: ...
    def get_paginator(self, operation: str) -> Pages: ...
    def generate_presigned_url(self, ClientMethod: str, Params: Mapping[str, str],
                               ExpiresIn: int) -> str: ...


def quiet_loggers() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.lru_cache(maxsize=8)
def client(endpoint_url: str | None, timeout: float = 60.0) -> Client:
    """The process's S3 client for `endpoint_url` (None: boto3's own choice). Clients are
    thread-safe and cost ~0.3 s to make, so one is shared; path-style addressing (bucket in the
    path) works with any endpoint, IP addresses and MinIO included; SigV4, because botocore
    would presign with SigV2 otherwise, which most regions refuse. A connection or a read
    waits `timeout` seconds at most, and a call is tried 5 times at most."""
    quiet_loggers()
    with _LOCK:  # boto3's default session is not thread-safe to create
        # Here, not at the top: importing boto3 costs ~0.1 s, and most runs never touch storage.
        import boto3
        from botocore.config import Config
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": 5, "mode": "standard"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        made: Client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                      config=config)
        return made


def failure(exc: BaseException, doing: str, name: S3Name, *, bucket: bool = False) -> str:
    """One sentence for a failed storage call: what was done, to which object (`bucket`: a
    call on the bucket itself), and why (never a credential: botocore's messages carry the
    code and the endpoint, not the keys; a URL in them is shown without its query)."""
    code = _code(exc)
    if code in ("404", "NoSuchBucket"):
        why = f"bucket {name.bucket!r} does not exist" if code == "NoSuchBucket" or bucket \
            else "no such object"
    elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        why = f"access denied ({code}); check the AWS credentials and the bucket's policy"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError):
        why = ("no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
               "AWS_PROFILE or ~/.aws)")
    elif code:
        why = f"{code}: {_message(exc)}"
    else:
        why = str(exc) or type(exc).__name__
    return f"{doing} {name}: {redact.text(why)}"


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
