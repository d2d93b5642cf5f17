"""Shared services and FastAPI dependencies (auth, DB session, tenancy)."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from api.errors import Forbidden, ServiceUnavailable, Unauthorized
from core.db import Database
from core.security import hash_key, key_matches
from core.settings import Settings
from models.db import Client
from services.access import KeyCache, client_by_key_hash, owned

__all__ = ["ClientDep", "Principal", "PrincipalDep", "Services", "ServicesDep", "SessionDep", "owned"]

log = logging.getLogger("orch.api")


@dataclass
class Services:
    """Process-wide resources, built by the app factory and kept on ``app.state.services``."""

    settings: Settings
    db: Database
    s3: Any
    temporal: Any = None  # temporalio.client.Client, connected lazily
    metrics: Any = None  # api.metrics.ApiMetrics
    keys: KeyCache = field(init=False)  # client-key lookups, ``settings.auth_cache_ttl_sec``

    def __post_init__(self) -> None:
        self.keys = KeyCache(self.settings.auth_cache_ttl_sec)

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


async def get_services(request: Request) -> Services:  # async: no threadpool hop for a dict lookup
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def _session(services: Services) -> AsyncIterator[Session]:
    """A request's session: committed when the caller is done, rolled back if it raises. Opening and
    closing it costs no threadpool hop: only ending a transaction that is still open (the handler did not
    commit itself) does I/O, and that runs in the threadpool, never on the event loop."""
    s = services.db.sessions()  # no connection until first used
    try:
        yield s
        if s.in_transaction() or s.new or s.dirty or s.deleted:
            await anyio.to_thread.run_sync(s.commit)
    except BaseException:
        if s.in_transaction():
            with anyio.CancelScope(shield=True):  # also when the request was cancelled
                await anyio.to_thread.run_sync(s.rollback)
        raise
    finally:
        if s.in_transaction():  # only after a failed commit or rollback (the connection is given back)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(s.close)
        else:
            s.close()


# For a handler that opens its session itself (one dependency fewer to resolve per request).
request_session = contextlib.asynccontextmanager(_session)


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    async with request_session(services) as s:
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


def lookup_client(services: Services, key_hash: str) -> Client | None:
    """Blocking: the client with this key hash (any status), in a short session of its own."""
    with services.db.session() as s:
        return client_by_key_hash(s, key_hash)


async def authenticate(
    services: ServicesDep, api_key: Annotated[str | None, Depends(api_key_header)]
) -> Principal:
    """The caller. A client key is looked up in its own short session in the threadpool (no request
    session or transaction is held by authentication) and the result is reused for
    ``ORCH_AUTH_CACHE_TTL_SEC`` seconds (``services.keys``), so most requests cost no DB round trip here."""
    if not api_key:
        raise Unauthorized("missing X-API-Key header", headers=_CHALLENGE)
    admin = services.settings.admin_api_key
    if admin and hmac.compare_digest(api_key.encode(), admin.encode()):
        return Principal(client=None)
    key_hash = hash_key(api_key)
    client = services.keys.get(key_hash)
    if client is None:
        epoch = services.keys.epoch()
        client = await anyio.to_thread.run_sync(lookup_client, services, key_hash)
        if client is not None:
            services.keys.put(key_hash, client, epoch)
    if client is None or not key_matches(api_key, client.api_key_hash):
        raise Unauthorized("unknown API key", headers=_CHALLENGE)
    if client.status != "active":
        raise Forbidden(f"client {client.id} is {client.status}")
    return Principal(client=client)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def tenant_of(principal: Principal) -> Client:
    """The caller's client; the admin key is not a tenant (403)."""
    if principal.client is None:
        raise Forbidden("this endpoint needs a client API key, not the admin key")
    return principal.client


async def require_client(principal: PrincipalDep) -> Client:  # async: pure, no threadpool hop
    """Endpoints that act inside one tenant need a client key (the admin key is not a tenant)."""
    return tenant_of(principal)


ClientDep = Annotated[Client, Depends(require_client)]


def install_db_errors(app) -> None:
    """Database contention is never a 500: a lock, statement or pool timeout (or SQLite "database is
    locked") is a 503 with Retry-After; a unique-constraint race that a handler did not map itself is a
    409. Registered by the app factory."""
    from sqlalchemy.exc import IntegrityError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from api.errors import problem
    from core.db import is_busy

    async def _busy(request: Request, exc: Exception):
        if not is_busy(exc):
            log.exception("database error on %s %s", request.method, request.url.path)
            return problem(500, "Internal error", "an unexpected error occurred; it has been logged")
        retry = str(request.app.state.services.settings.db_retry_after_sec)
        log.warning("database busy on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem(
            503,
            "Service unavailable",
            "the database is busy (lock or pool timeout); nothing was changed, retry later",
            headers={"Retry-After": retry},
            instance=request.url.path,
        )

    async def _integrity(request: Request, exc: Exception):
        log.info("integrity error on %s %s", request.method, request.url.path)
        return problem(
            409,
            "Conflict",
            "the request conflicts with a concurrent change (a unique value is already taken)",
            instance=request.url.path,
        )

    app.add_exception_handler(OperationalError, _busy)
    app.add_exception_handler(PoolTimeout, _busy)
    app.add_exception_handler(IntegrityError, _integrity)
