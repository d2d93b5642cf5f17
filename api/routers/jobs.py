"""Job requests: each one is a job row, a run row and one durable JobRunWorkflow."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import ClientDep, Services, ServicesDep, SessionDep, owned
from api.errors import Conflict, ServiceUnavailable, Unprocessable, field_error
from api.pagination import CursorQ, LimitQ, paginate
from core.planning import InfeasibleWindow, preview_plan
from models.api import JobCreate, JobCreated, JobOut, JobType, Page, window_limit_errors
from models.db import Job, JobTemplate, Run, new_id
from models.workflow import RunInput, workflow_id_for
from scheduling.scoring import Weights

log = logging.getLogger("orch.api")
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
    )


def _request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _check_times(body: JobCreate, services: Services, session, client, template: JobTemplate) -> None:
    now = datetime.now(UTC)
    settings = services.settings
    if body.type == JobType.ONE_TIME:
        if body.intended_time < now - timedelta(seconds=settings.past_tolerance_sec):
            raise Unprocessable(
                f"intended_time {body.intended_time.isoformat()} is in the past",
                [field_error("intended_time", "must not be in the past")],
            )
        return
    if body.latest_finish <= now:
        raise Unprocessable(
            f"latest_finish {body.latest_finish.isoformat()} is in the past",
            [field_error("latest_finish", "must be in the future")],
        )
    earliest = max(body.earliest_start, now)
    try:
        with services.plan_timer():
            preview_plan(
                session,
                settings,
                client,
                template,
                template.fleet_template_id,
                earliest,
                body.latest_finish,
                body.risk_mode.value,
                Weights(**body.weights.model_dump()),
            )
    except InfeasibleWindow as exc:
        raise Unprocessable(f"infeasible window: {exc}", [field_error("latest_finish", str(exc))]) from exc


async def start_run_workflow(services: Services, run: Run, job: Job, template: JobTemplate) -> None:
    """Start JobRunWorkflow ``run-<run_id>``; a duplicate start is harmless (Temporal rejects it by id)."""
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
    from temporalio.exceptions import WorkflowAlreadyStartedError

    client = await services.temporal_client()
    s = services.settings
    inp = RunInput(
        run_id=run.id,
        client_id=run.client_id,
        job_id=job.id,
        job_template_id=template.id,
        fleet_template_id=run.fleet_template_id,
        job_type=job.type,
        risk_mode=job.risk_mode,
        intended_time=job.intended_time,
        earliest_start=job.earliest_start,
        latest_finish=job.latest_finish,
        max_runtime_sec=template.max_runtime_sec,
        replan_interval_sec=s.replan_interval_sec,
        monitor_poll_sec=s.monitor_poll_sec,
    )
    when = (
        f"at {job.intended_time.isoformat()}"
        if job.type == "ONE_TIME"
        else f"in [{job.earliest_start.isoformat()}, {job.latest_finish.isoformat()}]"
    )
    try:
        await client.start_workflow(
            "JobRunWorkflow",
            inp,
            id=run.workflow_id,
            task_queue=s.temporal_task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributeKey.for_keyword("OrchClientId"), run.client_id),
                    SearchAttributePair(SearchAttributeKey.for_keyword("OrchJobTemplateId"), template.id),
                    SearchAttributePair(SearchAttributeKey.for_keyword("OrchRunStatus"), "PENDING"),
                ]
            ),
            static_summary=f"{template.name} ({job.type}, {job.risk_mode}) on {run.fleet_template_id}",
            static_details=f"client {run.client_id}, job {job.id}, run {run.id}, start {when}",
        )
    except WorkflowAlreadyStartedError:
        pass


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    summary="Submit a job: starts one durable workflow (honours Idempotency-Key)",
)
async def create_job(
    body: JobCreate,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="Same key + same body -> same job")
    ] = None,
) -> JobCreated:
    """Every database step runs in the threadpool and commits before the workflow start is awaited, so the
    event loop never waits on a lock and no transaction stays open across the Temporal call."""
    req_hash = _request_hash(body)
    check_limits(body, services.settings)
    kind, job, run, template = await run_in_threadpool(
        _insert_job, body, client, session, services, idempotency_key, req_hash
    )
    if kind == "replay":
        return await _replay(job, run, template, req_hash, services, response)
    try:
        await start_run_workflow(services, run, job, template)
    except Exception as exc:
        log.warning(
            "could not start workflow for run %s: %s", run.id, type(exc).__name__, extra={"run_id": run.id}
        )
        await run_in_threadpool(_delete_job, session, job.id, run.id)
        if isinstance(exc, ServiceUnavailable):
            raise
        raise ServiceUnavailable(
            "could not start the run's workflow (Temporal unavailable); nothing was created, retry later"
        ) from exc
    return JobCreated(job_id=job.id, run_id=run.id, workflow_id=run.workflow_id, status=run.status)


def check_limits(body: JobCreate, settings) -> None:
    errors = window_limit_errors(
        settings,
        datetime.now(UTC),
        intended_time=body.intended_time,
        earliest_start=body.earliest_start,
        latest_finish=body.latest_finish,
    )
    if errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in errors), errors)


def _existing(session, client, idempotency_key: str):
    job = session.scalar(
        select(Job).where(Job.client_id == client.id, Job.idempotency_key == idempotency_key)
    )
    if job is None:
        return None
    run = session.scalar(select(Run).where(Run.job_id == job.id).order_by(Run.created_at))
    template = session.get(JobTemplate, job.job_template_id)
    session.commit()
    return "replay", job, run, template


def _insert_job(body: JobCreate, client, session, services: Services, idempotency_key, req_hash):
    """Threadpool: idempotency lookup, validation and planning, then insert job + run and COMMIT.
    Returns ("new" | "replay", job, run, template)."""
    if idempotency_key:
        found = _existing(session, client, idempotency_key)
        if found is not None:
            return found
    template = owned(session, JobTemplate, body.job_template_id, client, "job template")
    _check_times(body, services, session, client, template)
    job = Job(
        id=new_id("job"),
        client_id=client.id,
        job_template_id=template.id,
        type=body.type.value,
        intended_time=body.intended_time,
        earliest_start=body.earliest_start,
        latest_finish=body.latest_finish,
        risk_mode=body.risk_mode.value,
        weights=body.weights.model_dump(),
        args=dict(body.args or {}),
        idempotency_key=idempotency_key,
        request_hash=req_hash,
    )
    run_id = new_id("run")
    run = Run(
        id=run_id,
        job_id=job.id,
        client_id=client.id,
        job_template_id=template.id,
        fleet_template_id=template.fleet_template_id,
        workflow_id=workflow_id_for(run_id),
        status="PENDING",
    )
    try:  # one short transaction: the template read, the plan's reads and the two inserts, then COMMIT
        session.add(job)
        session.flush()
        session.add(run)
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request with the same Idempotency-Key won
        found = _existing(session, client, idempotency_key) if idempotency_key else None
        if found is None:
            raise
        return found
    return "new", job, run, template


def _delete_job(session, job_id: str, run_id: str) -> None:
    """Threadpool: the workflow could not start, so the job leaves no trace (the run first: FK)."""
    session.execute(delete(Run).where(Run.id == run_id))
    session.execute(delete(Job).where(Job.id == job_id))
    session.commit()


async def _replay(job: Job, run: Run, template, req_hash: str, services: Services, response: Response):
    if job.request_hash != req_hash:
        raise Conflict("Idempotency-Key was already used with a different request body")
    if run.status == "PENDING":  # the first request may have died before starting the workflow
        await start_run_workflow(services, run, job, template)
    response.headers["Idempotent-Replayed"] = "true"
    return JobCreated(job_id=job.id, run_id=run.id, workflow_id=run.workflow_id, status=run.status)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    job_template_id: str | None = None,
) -> Page[JobOut]:
    stmt = select(Job).where(Job.client_id == client.id)
    if job_template_id:
        stmt = stmt.where(Job.job_template_id == job_template_id)
    rows, nxt = paginate(session, stmt, Job, limit, cursor)
    runs: dict[str, list[str]] = {}
    if rows:
        for rid, jid in session.execute(
            select(Run.id, Run.job_id).where(Run.job_id.in_([j.id for j in rows]))
        ):
            runs.setdefault(jid, []).append(rid)
    return Page[JobOut](items=[job_out(j, runs.get(j.id, [])) for j in rows], next_cursor=nxt)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, client: ClientDep, session: SessionDep) -> JobOut:
    job = owned(session, Job, job_id, client, "job")
    run_ids = list(session.scalars(select(Run.id).where(Run.job_id == job.id)))
    return job_out(job, run_ids)
