"""Shared services and FastAPI dependencies (auth, DB session, tenancy)."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized
from core.db import Database
from core.security import hash_key, key_matches
from core.settings import Settings
from models.db import Client


@dataclass
class Services:
    """Process-wide resources, built by the app factory and kept on ``app.state.services``."""

    settings: Settings
    db: Database
    s3: Any
    temporal: Any = None  # temporalio.client.Client, connected lazily
    metrics: Any = None  # api.metrics.ApiMetrics

    def plan_timer(self):
        """Context manager timing one plan into orch_plan_duration_seconds."""
        return self.metrics.plan_latency.time() if self.metrics else contextlib.nullcontext()

    async def temporal_client(self):
        if self.temporal is None:
            from core.temporal import connect

            try:
                self.temporal = await connect(self.settings)
            except Exception as exc:  # noqa: BLE001
                raise ServiceUnavailable(
                    f"Temporal is unreachable at {self.settings.temporal_address}"
                ) from exc
        return self.temporal


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.db.session() as s:
        yield s


# scope="function": commit when the endpoint returns, before the response is sent, so a failing commit is an
# error answer rather than a 2xx for a change that was never stored (the default scope commits after sending).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Client or admin API key")


@dataclass
class Principal:
    """Who is calling: the admin (client is None) or one client."""

    client: Client | None

    @property
    def is_admin(self) -> bool:
        return self.client is None

    @property
    def client_id(self) -> str | None:
        return self.client.id if self.client else None


_CHALLENGE = {"WWW-Authenticate": "APIKey"}


def authenticate(
    services: ServicesDep, session: SessionDep, api_key: Annotated[str | None, Depends(api_key_header)]
) -> Principal:
    if not api_key:
        raise Unauthorized("missing X-API-Key header", headers=_CHALLENGE)
    admin = services.settings.admin_api_key
    if admin and hmac.compare_digest(api_key.encode(), admin.encode()):
        return Principal(client=None)
    client = session.scalar(select(Client).where(Client.api_key_hash == hash_key(api_key)))
    if client is None or not key_matches(api_key, client.api_key_hash):
        raise Unauthorized("unknown API key", headers=_CHALLENGE)
    if client.status != "active":
        raise Forbidden(f"client {client.id} is {client.status}")
    return Principal(client=client)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_client(principal: PrincipalDep) -> Client:
    """Endpoints that act inside one tenant need a client key (the admin key is not a tenant)."""
    if principal.client is None:
        raise Forbidden("this endpoint needs a client API key, not the admin key")
    return principal.client


ClientDep = Annotated[Client, Depends(require_client)]


def owned(session: Session, model, obj_id: str, client: Client, what: str):
    """The row ``obj_id`` of ``model`` if it belongs to ``client``; otherwise 404 (never 403: a tenant
    must not learn that another tenant's id exists)."""
    obj = session.get(model, obj_id)
    if obj is None or obj.client_id != client.id:
        raise NotFound(f"{what} {obj_id} not found")
    return obj
