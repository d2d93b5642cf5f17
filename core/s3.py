"""S3 artifact store access (SeaweedFS in dev and tests, AWS S3 in production)."""

from __future__ import annotations

from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from core.settings import Settings


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
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


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
