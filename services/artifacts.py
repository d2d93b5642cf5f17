"""Artifact uploads and artifact-store upkeep (application layer: settings, DB, S3 client; no web types).

Upload flow (:func:`upload_artifact`, blocking: call it from a worker thread, never on an event loop):

1. hash the spooled upload (streamed from disk in 1 MiB reads) and check its size;
2. validate the zip from the spool (``fleets.archive.validate_zip``: header checks before any inflating);
3. look up ``(client, name, version)``: same sha256 -> the existing artifact, different -> conflict;
4. store the bytes in S3 under a key unique to this attempt (``<client>/<version>/<artifact id>/<name>``),
   one part in memory at a time (``core.s3.put_stream``; a failed multipart upload is aborted);
5. insert the row in its own short transaction (nothing slow happens while it is open);
   a unique-index violation means a concurrent upload won: re-read and answer same/conflict;
6. on any failure after the object was written, delete it unless a row references it (compensation).

A crash between 4 and 5 leaves an unreferenced object, and an outage mid-transfer can leave an incomplete
multipart upload: :func:`sweep_artifact_store` removes both once they are older than a grace period.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from core.s3 import ensure_bucket, is_unavailable, put_stream
from core.settings import Settings
from fleets.archive import ZipRejected, validate_zip
from models.db import Artifact, new_id

log = logging.getLogger("orch.artifacts")

_CHUNK = 1024 * 1024
# The keys uploads write: <client id>/<version>/<artifact id>/<file name>. The sweeper touches nothing else
# (the bucket also holds the runs' logs and results under runs/).
ARTIFACT_KEY_RE = re.compile(r"^[^/]+/[^/]+/art_[0-9a-f]{20}/[^/]+$")


class UploadError(Exception):
    """An upload that cannot be stored; the message is fit for the uploader."""


class InvalidArtifact(UploadError):
    """The file is not an acceptable application zip (422)."""


class ArtifactTooLarge(UploadError):
    """The file is over ``max_artifact_bytes`` (413)."""


class ArtifactConflict(UploadError):
    """``(name, version)`` exists with different content (409)."""


class StoreUnavailable(UploadError):
    """S3 or the database is unreachable or busy: nothing was stored, retry later (503)."""


@dataclass
class UploadResult:
    artifact: Artifact
    created: bool  # False: the same bytes were already stored under this name and version


def hash_spool(fileobj: BinaryIO, limit: int) -> tuple[str, int]:
    """sha256 and size of a seekable file, read from the start in 1 MiB chunks; position back at 0."""
    fileobj.seek(0)
    h, size = hashlib.sha256(), 0
    while chunk := fileobj.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ArtifactTooLarge(f"artifact is larger than the limit of {limit} bytes")
        h.update(chunk)
    fileobj.seek(0)
    return h.hexdigest(), size


def find_artifact(db: Any, client_id: str, name: str, version: str) -> Artifact | None:
    with db.session() as s:
        return s.scalar(
            select(Artifact).where(
                Artifact.client_id == client_id, Artifact.name == name, Artifact.version == version
            )
        )


def _same_or_conflict(existing: Artifact, sha: str) -> UploadResult:
    if existing.sha256 == sha:
        return UploadResult(existing, created=False)
    raise ArtifactConflict(
        f"{existing.name} version {existing.version} already exists with different content "
        f"(sha256 {existing.sha256}); artifacts are immutable, upload a new version"
    )


def _discard(db: Any, s3: Any, bucket: str, key: str) -> None:
    """Compensation: delete an object this upload wrote, unless a row references it. Best effort: what
    cannot be deleted now (store down) is left to the sweeper."""
    try:
        with db.session() as s:
            owned = s.scalar(select(Artifact.id).where(Artifact.s3_bucket == bucket, Artifact.s3_key == key))
        if owned is None:
            s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        log.warning(
            "could not delete orphan artifact object %s (%s); the sweeper will", key, type(exc).__name__
        )


def upload_artifact(
    settings: Settings, db: Any, s3: Any, *, client_id: str, name: str, version: str, fileobj: BinaryIO
) -> UploadResult:
    """Store one uploaded app zip (already spooled to ``fileobj``) as ``(client, name, version)``.

    Blocking. Raises :class:`InvalidArtifact`, :class:`ArtifactTooLarge`, :class:`ArtifactConflict` or
    :class:`StoreUnavailable`; anything else is a bug. No DB transaction stays open across S3 calls."""
    try:
        return _upload(settings, db, s3, client_id, name, version, fileobj)
    except OperationalError as exc:  # DB unreachable, locked or timed out: not the uploader's fault
        raise StoreUnavailable(
            "the database is busy or unreachable; nothing was stored, retry later"
        ) from exc


def _upload(
    settings: Settings, db: Any, s3: Any, client_id: str, name: str, version: str, fileobj: BinaryIO
) -> UploadResult:
    sha, size = hash_spool(fileobj, settings.max_artifact_bytes)
    if size == 0:
        raise InvalidArtifact("the file is empty")
    try:
        entry_point = validate_zip(fileobj, settings)
    except ZipRejected as exc:
        raise InvalidArtifact(f"invalid artifact: {exc}") from exc
    existing = find_artifact(db, client_id, name, version)
    if existing is not None:
        return _same_or_conflict(existing, sha)

    art_id = new_id("art")
    art = Artifact(
        id=art_id,
        client_id=client_id,
        name=name,
        version=version,
        sha256=sha,
        size_bytes=size,
        entry_point=entry_point,
        s3_bucket=settings.s3_bucket,
        s3_key=f"{client_id}/{version}/{art_id}/{name}",
    )
    try:
        try:
            _put(settings, s3, art, fileobj)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            # the API started while the store was down, so the bucket was never made: make it, try again
            ensure_bucket(s3, art.s3_bucket)
            _put(settings, s3, art, fileobj)
    except Exception as exc:
        _discard(db, s3, art.s3_bucket, art.s3_key)  # a PUT may have landed before the error
        if is_unavailable(exc):
            raise StoreUnavailable(
                "the artifact store (S3) is unreachable; nothing was stored, retry later"
            ) from exc
        raise
    try:
        with db.session() as s:  # one short transaction: INSERT + COMMIT, nothing awaited in between
            s.add(art)
    except IntegrityError:  # a concurrent upload of the same name and version committed first
        _discard(db, s3, art.s3_bucket, art.s3_key)
        existing = find_artifact(db, client_id, name, version)
        if existing is None:  # it was there a moment ago; cannot happen unless rows are deleted
            raise ArtifactConflict(f"{name} version {version} was uploaded concurrently; retry") from None
        return _same_or_conflict(existing, sha)
    except BaseException:
        _discard(db, s3, art.s3_bucket, art.s3_key)
        raise
    return UploadResult(art, created=True)


def _put(settings: Settings, s3: Any, art: Artifact, fileobj: BinaryIO) -> None:
    fileobj.seek(0)
    put_stream(
        s3,
        fileobj,
        art.s3_bucket,
        art.s3_key,
        settings.s3_part_size_bytes,
        content_type="application/zip",
        metadata={"sha256": art.sha256},
    )


# ---------------------------------------------------------------- sweeper
@dataclass
class SweepResult:
    objects_seen: int = 0  # artifact-shaped keys listed
    objects_deleted: int = 0  # unreferenced and older than the grace period
    objects_kept_referenced: int = 0
    multipart_aborted: int = 0  # incomplete multipart uploads older than the grace period


def sweep_artifact_store(settings: Settings, db: Any, s3: Any, now: datetime) -> SweepResult:
    """Delete artifact objects that no row references and abort incomplete multipart uploads, both only when
    older than ``settings.artifact_sweep_grace_sec`` (an upload in flight writes its object before its row).

    Only keys shaped like artifact keys (``<client>/<version>/art_<id>/<name>``) in ``settings.s3_bucket``
    are considered. Blocking; safe to run concurrently with uploads and with itself. Returns the counts."""
    bucket = settings.s3_bucket
    cutoff = now - timedelta(seconds=settings.artifact_sweep_grace_sec)
    result = SweepResult()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        old = [
            o["Key"]
            for o in page.get("Contents", [])
            if ARTIFACT_KEY_RE.match(o["Key"]) and o["LastModified"] < cutoff
        ]
        result.objects_seen += sum(1 for o in page.get("Contents", []) if ARTIFACT_KEY_RE.match(o["Key"]))
        if old:
            with db.session() as s:
                referenced = set(
                    s.scalars(
                        select(Artifact.s3_key).where(Artifact.s3_bucket == bucket, Artifact.s3_key.in_(old))
                    )
                )
            result.objects_kept_referenced += len(referenced)
            for key in old:
                if key not in referenced:
                    s3.delete_object(Bucket=bucket, Key=key)
                    result.objects_deleted += 1
                    log.info("swept orphan artifact object %s", key)
        if not page.get("IsTruncated"):
            break
        token = page.get("NextContinuationToken")
        if not token:
            break

    key_marker = upload_marker = None
    while True:
        kwargs = {"Bucket": bucket}
        if key_marker:
            kwargs["KeyMarker"] = key_marker
            if upload_marker:
                kwargs["UploadIdMarker"] = upload_marker
        page = s3.list_multipart_uploads(**kwargs)
        for up in page.get("Uploads", []):
            if ARTIFACT_KEY_RE.match(up["Key"]) and up["Initiated"] < cutoff:
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
                result.multipart_aborted += 1
                log.info("aborted stale multipart upload of %s", up["Key"])
        if not page.get("IsTruncated"):
            break
        key_marker, upload_marker = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")
        if not key_marker:
            break
    return result
