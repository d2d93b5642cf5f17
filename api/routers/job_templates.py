"""Job templates: artifact + default args + data URI + fleet template."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.deps import ClientDep, SessionDep, owned
from api.errors import Conflict, Unprocessable, field_error
from api.pagination import CursorQ, LimitQ, paginate
from core.aws_validation import check_region
from models.api import JobTemplateCreate, JobTemplateOut, Page
from models.db import Artifact, JobTemplate, new_id
from scheduling.catalog import get_fleet_template

router = APIRouter(prefix="/v1/job-templates", tags=["job-templates"])


def template_out(t: JobTemplate) -> JobTemplateOut:
    return JobTemplateOut(
        id=t.id,
        name=t.name,
        app_artifact_id=t.app_artifact_id,
        default_args=t.default_args,
        data_uri=t.data_uri,
        fleet_template_id=t.fleet_template_id,
        expected_runtime_sec=t.expected_runtime_sec,
        max_runtime_sec=t.max_runtime_sec,
        region=t.region,
        created_at=t.created_at,
    )


@router.post("", response_model=JobTemplateOut, status_code=status.HTTP_201_CREATED)
def create_template(body: JobTemplateCreate, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    owned(session, Artifact, body.app_artifact_id, client, "artifact")  # another tenant's: a 404
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
    return template_out(t)


@router.get("", response_model=Page[JobTemplateOut])
def list_templates(
    client: ClientDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[JobTemplateOut]:
    rows, nxt = paginate(
        session, select(JobTemplate).where(JobTemplate.client_id == client.id), JobTemplate, limit, cursor
    )
    return Page[JobTemplateOut](items=[template_out(t) for t in rows], next_cursor=nxt)


@router.get("/{template_id}", response_model=JobTemplateOut)
def get_template(template_id: str, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    return template_out(owned(session, JobTemplate, template_id, client, "job template"))
