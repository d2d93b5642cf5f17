"""Job templates: artifact + default args + data URI + fleet template (``services.job_templates``).

``PATCH`` makes a new version (runs keep the version they were planned with), ``GET .../versions`` lists
them, ``DELETE`` retires the template (readable, no new use; refused while recurring jobs use it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status

from api.deps import ClientDep, SessionDep
from api.pagination import CursorQ, LimitQ
from models.api import JobTemplateCreate, JobTemplateOut, JobTemplatePatch, JobTemplateVersionOut, Page
from models.db import JobTemplate
from services import job_templates

router = APIRouter(prefix="/v1/job-templates", tags=["job-templates"])

_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "The template is retired, its name is taken, or recurring jobs still use it"}
}


def template_out(t: JobTemplate) -> JobTemplateOut:
    out = JobTemplateOut.model_validate(t, from_attributes=True)
    out.status = "retired" if t.retired_at is not None else "active"
    return out


@router.post("", response_model=JobTemplateOut, status_code=status.HTTP_201_CREATED)
def create_template(body: JobTemplateCreate, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    t = job_templates.create_template(session, client, body)
    return template_out(t)


@router.get("", response_model=Page[JobTemplateOut])
def list_templates(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    include_retired: bool = Query(True, description="false: only templates that take new jobs"),
) -> Page[JobTemplateOut]:
    rows, nxt = job_templates.list_templates(session, client, limit, cursor, include_retired)
    return Page[JobTemplateOut](items=[template_out(t) for t in rows], next_cursor=nxt)


@router.get("/{template_id}", response_model=JobTemplateOut)
def get_template(template_id: str, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    return template_out(job_templates.get_template(session, client, template_id))


@router.patch(
    "/{template_id}",
    response_model=JobTemplateOut,
    responses=_409,
    summary="Change a template: makes a new version (runs keep the version they were planned with)",
)
def update_template(
    template_id: str, body: JobTemplatePatch, client: ClientDep, session: SessionDep
) -> JobTemplateOut:
    return template_out(job_templates.update_template(session, client, template_id, body))


@router.delete(
    "/{template_id}",
    response_model=JobTemplateOut,
    responses=_409,
    summary="Retire a template: it stays readable with its runs; new jobs, previews, reruns and recurring "
    "jobs are refused (409). Refused while recurring jobs use it (409 names them).",
)
def retire_template(template_id: str, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    return template_out(job_templates.retire_template(session, client, template_id))


@router.get(
    "/{template_id}/versions",
    response_model=list[JobTemplateVersionOut],
    summary="Every version of the template, newest first",
)
def list_versions(template_id: str, client: ClientDep, session: SessionDep) -> list[JobTemplateVersionOut]:
    return [
        JobTemplateVersionOut.model_validate(v, from_attributes=True)
        for v in job_templates.list_versions(session, client, template_id)
    ]
