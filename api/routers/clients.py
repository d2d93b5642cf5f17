"""Clients (tenants), their API keys and their AWS settings (``services.clients``)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import Principal, PrincipalDep, Services, ServicesDep, SessionDep
from api.errors import Forbidden
from api.pagination import CursorQ, LimitQ
from models.api import (
    AwsSettingsIn,
    AwsSettingsOut,
    AwsVerifyOut,
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientPatch,
    Page,
)
from models.db import Client
from services import clients, recurring

router = APIRouter(prefix="/v1/clients", tags=["clients"])


def client_out(c: Client) -> ClientOut:
    return ClientOut(
        id=c.id,
        name=c.name,
        status=c.status,
        api_key_prefix=c.api_key_prefix,
        created_at=c.created_at,
        key_rotated_at=c.key_rotated_at,
        aws_configured=bool(c.role_arn),
    )


def aws_out(c: Client) -> AwsSettingsOut:
    return AwsSettingsOut(
        client_id=c.id,
        role_arn=c.role_arn,
        external_id=c.external_id,
        region_default=c.region_default,
        session_name_template=c.session_name_template,
        subnet_ids=c.subnet_ids or [],
        security_group_ids=c.security_group_ids or [],
        instance_profile_arn=c.instance_profile_arn,
        allowed_regions=c.allowed_regions,
        region_settings=c.region_settings,
        updated_at=c.aws_updated_at,
    )


def committed(session: Session, services: Services, c: Client) -> None:
    """Commit a change of the client's row, then drop its cached key lookups: in this process the change
    (suspension, new key, AWS settings) is effective from the next request; other API processes see it
    within ``ORCH_AUTH_CACHE_TTL_SEC``."""
    session.commit()
    services.keys.forget(c.id)


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("only the admin key may do this")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientCreated,
    summary="Create a client (admin key); the raw API key is returned once",
)
def create_client(body: ClientCreate, principal: PrincipalDep, session: SessionDep) -> ClientCreated:
    require_admin(principal)
    c, raw = clients.create_client(session, body.name)
    return ClientCreated(id=c.id, api_key=raw, status=c.status, name=c.name)


@router.get("", response_model=Page[ClientOut], summary="List clients (admin: all; client: itself)")
def list_clients(
    principal: PrincipalDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[ClientOut]:
    rows, nxt = clients.list_clients(session, principal.client, limit, cursor)
    return Page[ClientOut](items=[client_out(c) for c in rows], next_cursor=nxt)


@router.get("/{client_id}", response_model=ClientOut)
def get_client(client_id: str, principal: PrincipalDep, session: SessionDep) -> ClientOut:
    return client_out(clients.visible_client(session, principal.client, client_id))


@router.patch("/{client_id}", response_model=ClientOut, summary="Suspend/reactivate or rename (admin key)")
async def patch_client(
    client_id: str, body: ClientPatch, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> ClientOut:
    """Suspending pauses the client's active recurring jobs (their Schedules); reactivating resumes those
    the suspension paused, and only those."""
    require_admin(principal)
    status_ = body.status.value if body.status is not None else None

    def store() -> tuple[ClientOut, bool]:
        c = clients.patch_client(session, principal.client, client_id, status_, body.name)
        changed = status_ is not None
        committed(session, services, c)
        return client_out(c), changed

    out, changed = await run_in_threadpool(store)
    if changed:
        await recurring.follow_client_status(session, client_id, services.temporal_client)
    return out


@router.post(
    "/{client_id}/rotate-key",
    response_model=ClientCreated,
    summary="Replace the client's API key; the old key stops working at once",
    description="At once on this API process; other API processes of a deployment may still accept the old "
    "key for up to `ORCH_AUTH_CACHE_TTL_SEC` seconds (5 by default), the life of their key-lookup cache.",
)
def rotate_key(
    client_id: str, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> ClientCreated:
    c, raw = clients.rotate_key(session, principal.client, client_id)
    committed(session, services, c)
    return ClientCreated(id=c.id, api_key=raw, status=c.status, name=c.name)


@router.put(
    "/{client_id}/aws",
    response_model=AwsSettingsOut,
    summary="Set the IAM role the orchestrator assumes in the client's account",
)
def put_aws(
    client_id: str, body: AwsSettingsIn, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> AwsSettingsOut:
    c = clients.put_aws(session, principal.client, client_id, body)
    committed(session, services, c)
    return aws_out(c)


@router.get("/{client_id}/aws", response_model=AwsSettingsOut)
def get_aws(client_id: str, principal: PrincipalDep, session: SessionDep) -> AwsSettingsOut:
    return aws_out(clients.get_aws(session, principal.client, client_id))


@router.post(
    "/{client_id}/aws/verify",
    response_model=AwsVerifyOut,
    summary="Try STS AssumeRole with the stored settings and report what AWS said",
)
async def verify_aws(
    client_id: str, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> AwsVerifyOut:
    """The DB read runs in the threadpool and commits before STS is called (``services.clients``)."""
    result = await clients.verify_aws(session, services.settings, principal.client, client_id)
    return AwsVerifyOut(**result)
