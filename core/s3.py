"""S3 artifact store access (SeaweedFS in dev and tests, AWS S3 in production)."""

from __future__ import annotations

import logging
from typing import BinaryIO
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from core.settings import Settings

log = logging.getLogger("orch.s3")


def s3_client(settings: Settings):
    """A boto3 S3 client for the configured store."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=Config(
            # S3-compatible servers (SeaweedFS, MinIO) want path-style; AWS picks virtual-hosted itself
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            signature_version="s3v4",
            # fail in seconds when the store is down (an upload answers 503), not after minutes of retries
            retries={"max_attempts": max(1, settings.s3_max_attempts), "mode": "standard"},
            connect_timeout=settings.s3_connect_timeout_sec,
            read_timeout=settings.s3_read_timeout_sec,
        ),
    )


# Error codes S3 (and S3-compatible stores) answer when the service, not the request, is at fault.
_UNAVAILABLE_CODES = {"ServiceUnavailable", "SlowDown", "InternalError", "RequestTimeout", "503", "500"}


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the store is unreachable or overloaded (worth a 503 and a retry later)."""
    if isinstance(exc, (BotoCoreError, ConnectionError, TimeoutError)) and not isinstance(
        exc, (NoCredentialsError, ParamValidationError)
    ):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _UNAVAILABLE_CODES or status >= 500
    return False


def put_stream(
    client,
    fileobj: BinaryIO,
    bucket: str,
    key: str,
    part_size: int,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> None:
    """Store ``fileobj`` (read from its current position) at ``bucket/key`` holding one part in memory.

    Smaller than ``part_size``: one PUT. Otherwise a multipart upload of ``part_size`` parts, sent one after
    the other, so memory stays one part per upload whatever the size; on any failure the multipart upload
    is aborted (best effort: the sweeper aborts what an outage or a crash leaves behind)."""
    part_size = max(part_size, 5 * 1024 * 1024)  # S3's minimum part size (all but the last)
    extra = {"ContentType": content_type, "Metadata": metadata or {}}
    chunk = fileobj.read(part_size)
    if len(chunk) < part_size:
        client.put_object(Bucket=bucket, Key=key, Body=chunk, **extra)
        return
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts: list[dict] = []
        while chunk:
            number = len(parts) + 1
            etag = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
            chunk = fileobj.read(part_size)
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the store may be down; the sweeper aborts it later
            log.warning("could not abort multipart upload of %s; the sweeper will", key)
        raise


def ensure_bucket(client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    p = urlparse(uri)
    if p.scheme != "s3" or not p.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return p.netloc, p.path.lstrip("/")
