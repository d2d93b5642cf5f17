"""Artifacts: versioned, immutable app zips stored in S3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.deps import ClientDep, ServicesDep, SessionDep, owned
from api.errors import Conflict, PayloadTooLarge, Unprocessable, field_error
from api.pagination import CursorQ, LimitQ, paginate
from models.api import ArtifactOut, Page
from models.db import Artifact, new_id

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
NAME_RE = re.compile(r"^[\w][\w.+-]{0,254}$")
VERSION_RE = re.compile(r"^[\w][\w.+-]{0,127}$")
CHUNK = 1024 * 1024


def artifact_out(a: Artifact) -> ArtifactOut:
    return ArtifactOut(
        artifact_id=a.id,
        s3_uri=f"s3://{a.s3_bucket}/{a.s3_key}",
        sha256=a.sha256,
        version=a.version,
        name=a.name,
        size_bytes=a.size_bytes,
        entry_point=a.entry_point,
        created_at=a.created_at,
    )


def _spool(upload: UploadFile, limit: int) -> tuple[tempfile.SpooledTemporaryFile, str, int]:
    """Copy the upload to a private temp file, hashing as it streams; enforce the size limit."""
    h, size = hashlib.sha256(), 0
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    while chunk := upload.file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            out.close()
            raise PayloadTooLarge(f"artifact is larger than the limit of {limit} bytes")
        h.update(chunk)
        out.write(chunk)
    out.seek(0)
    return out, h.hexdigest(), size


@router.post(
    "/upload",
    response_model=ArtifactOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ArtifactOut, "description": "Same bytes uploaded again: existing artifact"}},
    summary="Upload an app zip (multipart: file, version); immutable per (name, version)",
)
async def upload_artifact(
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The app zip: run.sh or main.py at its root")],
    version: Annotated[str, Form(max_length=128, description="e.g. 1.0.0")],
) -> ArtifactOut:
    from fleets.archive import ZipRejected, validate_zip

    settings = services.settings
    name = os.path.basename((file.filename or "").replace("\\", "/"))
    errors = []
    if not NAME_RE.match(name):
        errors.append(field_error("file", "file name must be 1-255 characters of letters, digits and ._+-"))
    version = version.strip()
    if not VERSION_RE.match(version):
        errors.append(field_error("version", "version must be 1-128 characters of letters, digits and ._+-"))
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors)

    spooled, sha, size = await asyncio.to_thread(_spool, file, settings.max_artifact_bytes)
    try:
        if size == 0:
            raise Unprocessable("the file is empty", [field_error("file", "empty file")])
        existing = session.scalar(
            select(Artifact).where(
                Artifact.client_id == client.id, Artifact.name == name, Artifact.version == version
            )
        )
        if existing is not None:
            if existing.sha256 == sha:
                response.status_code = status.HTTP_200_OK
                return artifact_out(existing)
            raise Conflict(
                f"{name} version {version} already exists with different content "
                f"(sha256 {existing.sha256}); artifacts are immutable, upload a new version"
            )
        try:
            entry_point = await asyncio.to_thread(validate_zip, spooled, settings)
        except ZipRejected as exc:
            raise Unprocessable(f"invalid artifact: {exc}", [field_error("file", str(exc))]) from exc
        spooled.seek(0)
        art = Artifact(
            id=new_id("art"),
            client_id=client.id,
            name=name,
            version=version,
            sha256=sha,
            size_bytes=size,
            entry_point=entry_point,
            s3_bucket=settings.s3_bucket,
            s3_key="",
        )
        art.s3_key = f"{client.id}/{version}/{art.id}/{name}"
        await asyncio.to_thread(
            services.s3.upload_fileobj,
            spooled,
            art.s3_bucket,
            art.s3_key,
            ExtraArgs={"ContentType": "application/zip", "Metadata": {"sha256": sha}},
        )
    finally:
        spooled.close()
    try:
        session.add(art)
        session.flush()
    except IntegrityError as exc:  # a concurrent upload of the same name+version won the race
        session.rollback()
        await asyncio.to_thread(services.s3.delete_object, Bucket=art.s3_bucket, Key=art.s3_key)
        raise Conflict(
            f"{name} version {version} was uploaded concurrently; retry to compare content"
        ) from exc
    except BaseException:
        await asyncio.to_thread(services.s3.delete_object, Bucket=art.s3_bucket, Key=art.s3_key)
        raise
    return artifact_out(art)


@router.get("", response_model=Page[ArtifactOut])
def list_artifacts(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    name: str | None = None,
) -> Page[ArtifactOut]:
    stmt = select(Artifact).where(Artifact.client_id == client.id)
    if name:
        stmt = stmt.where(Artifact.name == name)
    rows, nxt = paginate(session, stmt, Artifact, limit, cursor)
    return Page[ArtifactOut](items=[artifact_out(a) for a in rows], next_cursor=nxt)


@router.get("/{artifact_id}", response_model=ArtifactOut)
def get_artifact(artifact_id: str, client: ClientDep, session: SessionDep) -> ArtifactOut:
    return artifact_out(owned(session, Artifact, artifact_id, client, "artifact"))
