"""Job templates: artifact + default args + data URI + fleet template (``services.job_templates``)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import ClientDep, SessionDep
from api.pagination import CursorQ, LimitQ
from models.api import JobTemplateCreate, JobTemplateOut, Page
from services import job_templates

router = APIRouter(prefix="/v1/job-templates", tags=["job-templates"])


@router.post("", response_model=JobTemplateOut, status_code=status.HTTP_201_CREATED)
def create_template(body: JobTemplateCreate, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    t = job_templates.create_template(session, client, body)
    return JobTemplateOut.model_validate(t, from_attributes=True)


@router.get("", response_model=Page[JobTemplateOut])
def list_templates(
    client: ClientDep, session: SessionDep, limit: LimitQ = 50, cursor: CursorQ = None
) -> Page[JobTemplateOut]:
    rows, nxt = job_templates.list_templates(session, client, limit, cursor)
    items = [JobTemplateOut.model_validate(t, from_attributes=True) for t in rows]
    return Page[JobTemplateOut](items=items, next_cursor=nxt)


@router.get("/{template_id}", response_model=JobTemplateOut)
def get_template(template_id: str, client: ClientDep, session: SessionDep) -> JobTemplateOut:
    t = job_templates.get_template(session, client, template_id)
    return JobTemplateOut.model_validate(t, from_attributes=True)
