"""Clients (tenants): their API keys and their AWS settings (application layer).

``caller`` is the calling client, or None for the admin: the admin sees every client, a client only itself
(another client's id is NotFound, never a refusal). Which operations need the admin key is decided at the
edge (the API's ``require_admin``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import aws_validation as v
from core.security import hash_key, new_api_key, new_external_id
from core.settings import Settings
from models.api import AwsSettingsIn
from models.db import Client, JobTemplate, new_id, utcnow
from services.errors import Conflict, NotFound, Unprocessable, field_error
from services.pagination import paginate
from services.regions import allowed_for_client, client_region_errors


def visible_client(session: Session, caller: Client | None, client_id: str) -> Client:
    if caller is not None and caller.id != client_id:
        raise NotFound(f"client {client_id} not found")
    c = session.get(Client, client_id)
    if c is None:
        raise NotFound(f"client {client_id} not found")
    return c


def create_client(session: Session, name: str) -> tuple[Client, str]:
    """A new active client and its raw API key (shown once; only its hash is stored)."""
    raw = new_api_key()
    c = Client(
        id=new_id("cl"), name=name, status="active", api_key_hash=hash_key(raw), api_key_prefix=raw[:12]
    )
    session.add(c)
    session.flush()
    return c, raw


def list_clients(
    session: Session, caller: Client | None, limit: int, cursor: str | None
) -> tuple[list[Client], str | None]:
    stmt = select(Client)
    if caller is not None:
        stmt = stmt.where(Client.id == caller.id)
    return paginate(session, stmt, Client, limit, cursor)


def patch_client(
    session: Session, caller: Client | None, client_id: str, status: str | None, name: str | None
) -> Client:
    c = visible_client(session, caller, client_id)
    if status is not None:
        c.status = status
    if name is not None:
        c.name = name
    return c


def rotate_key(session: Session, caller: Client | None, client_id: str) -> tuple[Client, str]:
    """Replace the client's API key; the old one stops working at once. Returns the new raw key."""
    c = visible_client(session, caller, client_id)
    raw = new_api_key()
    c.api_key_hash, c.api_key_prefix, c.key_rotated_at = hash_key(raw), raw[:12], utcnow()
    return c, raw


def put_aws(session: Session, caller: Client | None, client_id: str, body: AwsSettingsIn) -> Client:
    """Store the IAM role the orchestrator assumes in the client's account (every field checked first;
    a missing ``external_id`` gets a strong generated one; one per client: Conflict if taken)."""
    c = visible_client(session, caller, client_id)
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
    for region, rs in (body.region_settings or {}).items():
        if rs.instance_profile_arn and not v.INSTANCE_PROFILE_RE.match(rs.instance_profile_arn):
            errors.append(
                field_error(
                    f"region_settings/{region}/instance_profile_arn",
                    "must look like arn:aws:iam::<account>:instance-profile/<name>",
                )
            )
    errors += client_region_errors(
        body.region_default,
        body.allowed_regions,
        {k: rs.model_dump() for k, rs in (body.region_settings or {}).items()},
        partition,
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
    c.allowed_regions = list(body.allowed_regions) if body.allowed_regions is not None else None
    c.region_settings = (
        {k: rs.model_dump() for k, rs in body.region_settings.items()}
        if body.region_settings is not None
        else None
    )
    try:
        session.flush()
    except IntegrityError as exc:  # concurrent claim of the same external_id
        raise Conflict("external_id is already used by another client") from exc
    return c


def get_aws(session: Session, caller: Client | None, client_id: str) -> Client:
    c = visible_client(session, caller, client_id)
    if not c.role_arn:
        raise NotFound(f"client {client_id} has no AWS settings yet; PUT them first")
    return c


async def verify_aws(
    session: Session, settings: Settings, caller: Client | None, client_id: str
) -> dict[str, Any]:
    """Try STS AssumeRole with the stored settings; what AWS said (``core.aws.verify_role``). Then, for each
    region the client's runs may go to (its allowed regions, plus its templates' own regions), which of its
    templates' instance types the account is not offered there (``core.aws.instance_type_offerings``). The
    DB read runs in a worker thread and commits before AWS is called."""

    def load() -> tuple[Client, list[str], list[str]]:
        c = visible_client(session, caller, client_id)
        templates = session.execute(
            select(JobTemplate.fleet_template_id, JobTemplate.region).where(JobTemplate.client_id == c.id)
        ).all()
        regions = allowed_for_client(c)
        if not c.allowed_regions:  # only home regions: each template's own, else region_default
            regions += [r for r in sorted({t.region for t in templates if t.region}) if r not in regions]
        session.commit()  # no transaction stays open while STS is called
        return c, regions, sorted({t.fleet_template_id for t in templates})

    c, regions, instance_types = await anyio.to_thread.run_sync(load)
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
    # asyncio's executor, not the request threadpool: a slow STS answer must not hold the API's DB threads
    result = await asyncio.to_thread(verify_role, access, settings)
    if result.get("ok"):
        from core.aws import instance_type_offerings

        result["regions"] = await asyncio.to_thread(
            instance_type_offerings, access, settings, regions, instance_types
        )
    return result
