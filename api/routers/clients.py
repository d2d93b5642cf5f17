"""Clients (tenants), their API keys and their AWS settings."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, ServicesDep, SessionDep
from api.errors import Conflict, Forbidden, NotFound, Unprocessable, field_error
from api.pagination import CursorQ, LimitQ, paginate
from core import aws_validation as v
from core.security import hash_key, new_api_key, new_external_id
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
from models.db import Client, new_id, utcnow

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


def visible_client(session, principal, client_id: str) -> Client:
    """The admin sees every client; a client sees only itself (others are a 404, never a 403)."""
    if not principal.is_admin and principal.client_id != client_id:
        raise NotFound(f"client {client_id} not found")
    c = session.get(Client, client_id)
    if c is None:
        raise NotFound(f"client {client_id} not found")
    return c


def require_admin(principal) -> None:
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
    raw = new_api_key()
    c = Client(
        id=new_id("cl"), name=body.name, status="active", api_key_hash=hash_key(raw), api_key_prefix=raw[:12]
    )
    session.add(c)
    session.flush()
    return ClientCreated(id=c.id, api_key=raw, status=c.status, name=c.name)


@router.get("", response_model=Page[ClientOut], summary="List clients (admin: all; client: itself)")
def list_clients(
    principal: PrincipalDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[ClientOut]:
    stmt = select(Client)
    if not principal.is_admin:
        stmt = stmt.where(Client.id == principal.client_id)
    rows, nxt = paginate(session, stmt, Client, limit, cursor)
    return Page[ClientOut](items=[client_out(c) for c in rows], next_cursor=nxt)


@router.get("/{client_id}", response_model=ClientOut)
def get_client(client_id: str, principal: PrincipalDep, session: SessionDep) -> ClientOut:
    return client_out(visible_client(session, principal, client_id))


@router.patch("/{client_id}", response_model=ClientOut, summary="Suspend/reactivate or rename (admin key)")
def patch_client(
    client_id: str, body: ClientPatch, principal: PrincipalDep, session: SessionDep
) -> ClientOut:
    require_admin(principal)
    c = visible_client(session, principal, client_id)
    if body.status is not None:
        c.status = body.status.value
    if body.name is not None:
        c.name = body.name
    return client_out(c)


@router.post(
    "/{client_id}/rotate-key",
    response_model=ClientCreated,
    summary="Replace the client's API key; the old key stops working at once",
)
def rotate_key(client_id: str, principal: PrincipalDep, session: SessionDep) -> ClientCreated:
    c = visible_client(session, principal, client_id)
    raw = new_api_key()
    c.api_key_hash, c.api_key_prefix, c.key_rotated_at = hash_key(raw), raw[:12], utcnow()
    return ClientCreated(id=c.id, api_key=raw, status=c.status, name=c.name)


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
        updated_at=c.aws_updated_at,
    )


@router.put(
    "/{client_id}/aws",
    response_model=AwsSettingsOut,
    summary="Set the IAM role the orchestrator assumes in the client's account",
)
def put_aws(
    client_id: str, body: AwsSettingsIn, principal: PrincipalDep, session: SessionDep
) -> AwsSettingsOut:
    c = visible_client(session, principal, client_id)
    errors = []
    partition = None
    try:
        partition = v.check_role_arn(body.role_arn)
    except ValueError as exc:
        errors.append(field_error("role_arn", str(exc)))
    try:
        v.check_region(body.region_default, partition)
    except ValueError as exc:
        errors.append(field_error("region_default", str(exc)))
    try:
        v.check_session_name_template(body.session_name_template, c.id)
    except ValueError as exc:
        errors.append(field_error("session_name_template", str(exc)))
    if body.instance_profile_arn and not v.INSTANCE_PROFILE_RE.match(body.instance_profile_arn):
        errors.append(
            field_error(
                "instance_profile_arn", "must look like arn:aws:iam::<account>:instance-profile/<name>"
            )
        )
    if errors:
        raise Unprocessable(
            "invalid AWS settings: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors
        )
    external_id = body.external_id or c.external_id or new_external_id()
    taken = session.scalar(select(Client.id).where(Client.external_id == external_id, Client.id != c.id))
    if taken:
        raise Conflict("external_id is already used by another client; omit it to get a generated one")
    c.role_arn, c.external_id, c.region_default = body.role_arn, external_id, body.region_default
    c.session_name_template = body.session_name_template
    c.subnet_ids, c.security_group_ids = list(body.subnet_ids), list(body.security_group_ids)
    c.instance_profile_arn, c.aws_updated_at = body.instance_profile_arn, utcnow()
    try:
        session.flush()
    except IntegrityError as exc:  # concurrent claim of the same external_id
        raise Conflict("external_id is already used by another client") from exc
    return aws_out(c)


@router.get("/{client_id}/aws", response_model=AwsSettingsOut)
def get_aws(client_id: str, principal: PrincipalDep, session: SessionDep) -> AwsSettingsOut:
    c = visible_client(session, principal, client_id)
    if not (c.role_arn and c.external_id and c.region_default and c.session_name_template):
        raise NotFound(f"client {client_id} has no AWS settings yet; PUT them first")
    return aws_out(c)


@router.post(
    "/{client_id}/aws/verify",
    response_model=AwsVerifyOut,
    summary="Try STS AssumeRole with the stored settings and report what AWS said",
)
async def verify_aws(
    client_id: str, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> AwsVerifyOut:
    def load() -> Client:  # threadpool: the event loop never waits on the database
        c = visible_client(session, principal, client_id)
        session.commit()  # no transaction stays open while STS is called
        return c

    c = await run_in_threadpool(load)
    if not (c.role_arn and c.external_id and c.region_default and c.session_name_template):
        raise NotFound(f"client {client_id} has no AWS settings yet; PUT them first")
    from core.aws import verify_role
    from fleets.base import AwsAccess

    access = AwsAccess(
        role_arn=c.role_arn,
        external_id=c.external_id,
        region=c.region_default,
        session_name=v.render_session_name(c.session_name_template, c.id),
    )
    result = await asyncio.to_thread(verify_role, access, services.settings)
    return AwsVerifyOut(**result)
