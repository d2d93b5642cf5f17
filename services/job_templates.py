"""Job templates: artifact + default args + data URI + fleet template (application layer)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.aws_validation import check_region
from models.api import JobTemplateCreate
from models.db import Artifact, Client, JobTemplate, new_id
from scheduling.catalog import get_fleet_template
from services.access import owned
from services.errors import Conflict, Unprocessable, field_error
from services.pagination import paginate
from services.regions import template_region_errors


def create_template(session: Session, client: Client, body: JobTemplateCreate) -> JobTemplate:
    """Unprocessable for an unknown fleet template or region, a region list the client does not allow
    (``services.regions.template_region_errors``), NotFound for an artifact that is not the
    client's, Conflict for a name the client already uses."""
    owned(session, Artifact, body.app_artifact_id, client, "artifact")
    errors = []
    if get_fleet_template(body.fleet_template_id) is None:
        errors.append(
            field_error(
                "fleet_template_id",
                f"unknown fleet template {body.fleet_template_id!r}; GET /v1/fleet-templates lists them",
            )
        )
    if body.region:
        try:
            check_region(body.region)
        except ValueError as exc:
            errors.append(field_error("region", str(exc)))
    if not any(e["path"] == "region" for e in errors):
        errors += template_region_errors(client, body.region, body.regions, body.data_region)
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors)
    t = JobTemplate(
        id=new_id("tpl"),
        client_id=client.id,
        name=body.name,
        app_artifact_id=body.app_artifact_id,
        default_args=dict(body.default_args),
        data_uri=body.data_uri,
        fleet_template_id=body.fleet_template_id,
        expected_runtime_sec=body.expected_runtime_sec,
        max_runtime_sec=body.max_runtime_sec,
        region=body.region,
        regions=list(body.regions) if body.regions is not None else None,
        data_region=body.data_region,
        retry_policy=body.retry_policy.model_dump() if body.retry_policy is not None else None,
    )
    if session.scalar(
        select(JobTemplate.id).where(JobTemplate.client_id == client.id, JobTemplate.name == body.name)
    ):
        raise Conflict(f"a job template named {body.name!r} already exists")
    try:
        session.add(t)
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a job template named {body.name!r} already exists") from exc
    return t


def list_templates(
    session: Session, client: Client, limit: int, cursor: str | None
) -> tuple[list[JobTemplate], str | None]:
    stmt = select(JobTemplate).where(JobTemplate.client_id == client.id)
    return paginate(session, stmt, JobTemplate, limit, cursor)


def get_template(session: Session, client: Client, template_id: str) -> JobTemplate:
    return owned(session, JobTemplate, template_id, client, "job template")
