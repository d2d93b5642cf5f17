"""Artifacts: versioned, immutable app zips stored in S3."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile, status
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import select

from api.deps import ClientDep, PrincipalDep, ServicesDep, SessionDep, authenticate, owned, tenant_of
from api.errors import (
    ApiError,
    Conflict,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    field_error,
)
from api.pagination import CursorQ, LimitQ, paginate
from models.api import ArtifactOut, Page
from models.db import Artifact
from services import artifacts as svc

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
NAME_RE = re.compile(r"^[\w][\w.+-]{0,254}$")
VERSION_RE = re.compile(r"^[\w][\w.+-]{0,127}$")
RETRY_AFTER_BUSY = "5"  # seconds: upload slots free up as uploads finish
RETRY_AFTER_DOWN = "30"  # seconds: S3 or the DB is down


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


class TooManyRequests(ApiError):
    status, title = 429, "Too many requests"


class UploadGate:
    """At most ``limit`` uploads at once in this process; one more is refused at once (429), never queued.

    Taken before the request body is read (see :class:`GatedUploadRoute`), so a refused upload costs
    neither disk nor memory. Event-loop only (no locking needed). Exported as the Prometheus gauge
    ``orch_uploads_in_progress`` and the counter ``orch_uploads_refused_total``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()  # never the global one
        self.active = 0
        self.in_progress = Gauge(
            "orch_uploads_in_progress", "Artifact uploads being received or processed", registry=registry
        )
        self.refused = Counter(
            "orch_uploads_refused", "Artifact uploads refused (429): too many in progress", registry=registry
        )

    @contextlib.contextmanager
    def slot(self, limit: int):
        if self.active >= limit:
            self.refused.inc()
            raise TooManyRequests(
                f"{self.active} uploads are in progress, the limit is {limit}; retry in a few seconds",
                headers={"Retry-After": RETRY_AFTER_BUSY},
            )
        self.active += 1
        self.in_progress.set(self.active)
        try:
            yield
        finally:
            self.active -= 1
            self.in_progress.set(self.active)


class GatedUploadRoute(APIRoute):
    """The upload route: checks the API key, then takes an upload slot, both before FastAPI reads and
    spools the multipart body, so a caller without a valid client key never holds a slot nor sends a byte
    that is read (issue 21: slow unauthenticated uploads held every slot)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def gated(request: Request):
            app = request.app
            # 401 / 403 before the body (the dependency below finds the lookup in the key cache)
            tenant_of(await authenticate(app.state.services, request.headers.get("X-API-Key")))
            gate = getattr(app.state, "upload_gate", None)
            if gate is None:
                metrics = getattr(app.state, "metrics", None)
                gate = app.state.upload_gate = UploadGate(metrics.registry if metrics else None)
            with gate.slot(app.state.services.settings.max_concurrent_uploads):
                return await handler(request)

        return gated


async def upload_client_id(principal: PrincipalDep) -> str:
    """The calling client's id. Authentication holds no session or transaction of the request (its lookup
    runs in a short session of its own, or hits the key cache), so nothing is held while the body is hashed,
    checked and stored."""
    return tenant_of(principal).id


async def upload_artifact(
    client_id: Annotated[str, Depends(upload_client_id)],
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The app zip: run.sh or main.py at its root")],
    version: Annotated[str, Form(max_length=128, description="e.g. 1.0.0")],
) -> ArtifactOut:
    """Stores the zip under ``(name, version)``: 201 new, 200 when the same bytes are already stored under
    them, 409 when different bytes are. The zip is checked first (422 naming the rule it breaks: entry
    point, paths, zip-bomb limits, entry name length and depth). 429 + ``Retry-After`` when
    ``ORCH_MAX_CONCURRENT_UPLOADS`` uploads are already in progress, 503 + ``Retry-After`` when S3 or the
    database is unreachable; in both cases nothing is stored."""
    # The form parser has spooled the body (1 MiB in memory, the rest on disk); everything that blocks
    # (hashing, zip checks, DB, S3) runs in one worker thread: the event loop never waits on it.
    name = os.path.basename((file.filename or "").replace("\\", "/"))
    errors = []
    if not NAME_RE.match(name):
        errors.append(field_error("file", "file name must be 1-255 characters of letters, digits and ._+-"))
    version = version.strip()
    if not VERSION_RE.match(version):
        errors.append(field_error("version", "version must be 1-128 characters of letters, digits and ._+-"))
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors)
    try:
        result = await anyio.to_thread.run_sync(
            functools.partial(
                svc.upload_artifact,
                services.settings,
                services.db,
                services.s3,
                client_id=client_id,
                name=name,
                version=version,
                fileobj=file.file,
            )
        )
    except svc.InvalidArtifact as exc:
        raise Unprocessable(str(exc), [field_error("file", str(exc))]) from exc
    except svc.ArtifactTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except svc.ArtifactConflict as exc:
        raise Conflict(str(exc)) from exc
    except svc.StoreUnavailable as exc:
        raise ServiceUnavailable(str(exc), retry_after=int(RETRY_AFTER_DOWN)) from exc
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return artifact_out(result.artifact)


router.add_api_route(
    "/upload",
    upload_artifact,
    methods=["POST"],
    response_model=ArtifactOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ArtifactOut, "description": "Same bytes uploaded again: existing artifact"},
        429: {"description": "Too many uploads in progress; retry after Retry-After seconds"},
        503: {"description": "S3 or the database is unreachable; nothing was stored, retry later"},
    },
    summary="Upload an app zip (multipart: file, version); immutable per (name, version)",
    route_class_override=GatedUploadRoute,
)


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
