"""Job requests: each one is a job row, a run row and one durable JobRunWorkflow (``services.jobs``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from api.deps import ClientDep, PrincipalDep, ServicesDep, SessionDep, request_session, tenant_of
from api.pagination import CursorQ, LimitQ
from models.api import JobCreate, JobCreated, JobOut, Page
from models.db import Job
from services import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(job: Job, run_ids: list[str]) -> JobOut:
    return JobOut(
        id=job.id,
        job_template_id=job.job_template_id,
        type=job.type,
        intended_time=job.intended_time,
        earliest_start=job.earliest_start,
        latest_finish=job.latest_finish,
        risk_mode=job.risk_mode,
        weights=job.weights,
        args=job.args,
        created_at=job.created_at,
        run_ids=run_ids,
        regions=job.regions,
        retry_policy=job.retry_policy,
        job_template_version=job.job_template_version or 1,
        rerun_of=job.rerun_of,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    summary="Submit a job: starts one durable workflow (honours Idempotency-Key)",
)
async def create_job(
    body: JobCreate,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="Same key + same body -> same job")
    ] = None,
) -> JobCreated:
    """``services.jobs.create_job`` runs every database step in the threadpool and commits before the
    workflow start is awaited, so the event loop never waits on a lock and no transaction stays open across
    the Temporal call. The session is opened here rather than as a dependency: this is the hot path."""
    client = tenant_of(principal)
    async with request_session(services) as session:
        sub = await jobs.create_job(
            session,
            services.settings,
            client,
            body,
            idempotency_key,
            services.temporal_client,
            services.plan_timer,
        )
    if sub.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    run = sub.run
    return JobCreated(job_id=sub.job.id, run_id=run.id, workflow_id=run.workflow_id, status=run.status)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    job_template_id: str | None = None,
) -> Page[JobOut]:
    rows, nxt = jobs.list_jobs(session, client, limit, cursor, job_template_id)
    return Page[JobOut](items=[job_out(j, run_ids) for j, run_ids in rows], next_cursor=nxt)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, client: ClientDep, session: SessionDep) -> JobOut:
    return job_out(*jobs.get_job(session, client, job_id))
