"""Staging: chunks put in S3-compatible storage for the API to fetch by presigned GET URL, and
taken away again.

Objects are uploaded with boto3's transfer manager (multipart above 16 MiB, parts in parallel;
every request retried by botocore's standard retry mode), built chunks straight from memory.
A presigned URL is made locally (no request) and is all the API ever gets; messages name
s3://bucket/key, never the URL. A run's objects live under one prefix per video and output
folder, so that a rerun after a crash can remove what the crashed run left there, and only
that."""

from __future__ import annotations

import io
import logging

from pipeline.errors import ConfigError, StagingError
from pipeline.send import s3
from pipeline.types import LocalVideo, S3Name, VideoBytes

log = logging.getLogger(__name__)

_MIB = 1 << 20
# S3 caps a SigV4 presigned URL at 7 days.
MAX_URL_SECONDS = 7 * 24 * 3600


class Stager:
    """Uploads, presigns and deletes objects under `place` (s3://bucket/prefix)."""

    def __init__(self, place: S3Name, *, endpoint_url: str | None = None,
                 client: s3.Client | None = None) -> None:
        self.place = place
        self._endpoint = endpoint_url
        self._client = client

    @property
    def client(self) -> s3.Client:
        if self._client is None:
            self._client = s3.client(self._endpoint)
        return self._client

    def check(self) -> None:
        """Raise ConfigError unless the bucket exists and lets us in (one HEAD request)."""
        try:
            self.client.head_bucket(Bucket=self.place.bucket)
        except (*s3.ERRORS, ValueError) as exc:  # ValueError: botocore's check of the endpoint
            raise ConfigError(s3.failure(exc, "--stage: cannot use", self.place,
                                         bucket=True)) from exc

    def put(self, name: S3Name, media: LocalVideo) -> None:
        """Upload a chunk's bytes (from memory) or file."""
        # boto3 is imported when the first client is made (it is slow to import): by now
        from boto3.exceptions import Boto3Error
        from boto3.s3.transfer import TransferConfig
        config = TransferConfig(multipart_threshold=16 * _MIB, multipart_chunksize=16 * _MIB,
                                max_concurrency=4)
        extra = {"ContentType": "video/mp4"}
        try:
            if isinstance(media, VideoBytes):
                self.client.upload_fileobj(io.BytesIO(media.data), name.bucket, name.key,
                                           ExtraArgs=extra, Config=config)
            else:
                self.client.upload_file(media.path, name.bucket, name.key, ExtraArgs=extra,
                                        Config=config)
        except (*s3.ERRORS, Boto3Error) as exc:  # Boto3Error: an upload that failed
            raise StagingError(s3.failure(exc, "cannot stage a chunk at", name)) from exc

    def presign(self, name: S3Name, seconds: float) -> str:
        return presign(self.client, name, seconds)

    def delete(self, name: S3Name) -> None:
        """Remove one object; a failure is logged (the video's last sweep tries again)."""
        try:
            self.client.delete_object(Bucket=name.bucket, Key=name.key)
        except s3.ERRORS as exc:
            log.warning("%s", s3.failure(exc, "could not remove the staged chunk", name))

    def clear(self, prefix: S3Name) -> int:
        """Remove every object under `prefix` (a folder: it ends at a '/'), and the parts of
        uploads a killed run left unfinished there (never listed, but stored); how many
        objects."""
        folder = prefix.key.rstrip("/") + "/"
        removed = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=prefix.bucket, Prefix=folder)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=prefix.bucket,
                                               Delete={"Objects": keys, "Quiet": True})
                    removed += len(keys)
            self._abort_uploads(prefix.bucket, folder)
        except s3.ERRORS as exc:
            log.warning("%s", s3.failure(exc, "could not clear staged chunks under", prefix))
        return removed

    def _abort_uploads(self, bucket: str, folder: str) -> None:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=folder)
        for page in pages:
            for upload in page.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                                   UploadId=upload["UploadId"])


def presign(client: s3.Client, name: S3Name, seconds: float) -> str:
    """A GET URL for `name`, valid `seconds` (at most 7 days); made locally, no request."""
    expires = max(0, min(MAX_URL_SECONDS, int(seconds + 0.999)))
    try:
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": name.bucket, "Key": name.key}, ExpiresIn=expires)
    except s3.ERRORS as exc:
        raise StagingError(s3.failure(exc, "cannot make a URL for", name)) from exc
    return url
