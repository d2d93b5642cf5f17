"""Jobs: a job request becomes a job row, a run row and one durable ``JobRunWorkflow`` (application layer).

:func:`create_job` is the whole submit: idempotency (same ``Idempotency-Key`` + same body -> the same job;
another body -> Conflict), the window checks and the plan check, the two inserts in one short transaction
that COMMITS before Temporal is awaited, the workflow start, and the clean-up when the start fails (the job
leaves no trace). :func:`start_run_workflow` is the ONE way a run's workflow is started: by the API here and
by the reconciler (``activities/maintenance.py``) for runs stranded ``PENDING``.

Blocking DB work runs in a worker thread (``anyio.to_thread``, the same pool as the API's sync handlers), so
an event loop never waits on a lock. No web or Temporal types in the signatures: the Temporal client is any
object with ``start_workflow`` (passed directly, or as an async getter that connects lazily).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio.to_thread
from pydantic import ValidationError
from sqlalchemy import Table, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.settings import Settings
from models.api import JobCreate, args_launch_problem, window_limit_errors
from models.db import Client, Job, JobTemplate, Run, new_id, utcnow
from models.domain import SA_CLIENT_ID, SA_JOB_TEMPLATE_ID, SA_RUN_STATUS, JobType, RunStatus
from models.workflow import RetrySpec, RunInput, workflow_id_for
from scheduling.scoring import Weights
from services.access import owned
from services.errors import Conflict, Unavailable, Unprocessable, field_error
from services.job_templates import template_at, usable_template
from services.pagination import paginate
from services.planning import InfeasibleWindow, preview_plan
from services.regions import NoCandidateRegion, candidate_regions, job_region_errors

log = logging.getLogger("orch.api")

TemporalClient = Any  # temporalio.client.Client, or anything with the same start_workflow
TemporalSource = Callable[[], Awaitable[TemporalClient]]  # connects lazily; raises Unavailable if it cannot
PlanTimer = Callable[[], AbstractContextManager[Any]]


@dataclass
class Submitted:
    """The outcome of :func:`create_job`. ``replayed``: an earlier request with the same Idempotency-Key
    and body created it."""

    job: Job
    run: Run
    template: JobTemplate
    replayed: bool = False


# ---------------------------------------------------------------- the workflow start
def _when(t: datetime | None) -> str:
    """A time for people (Web UI summary and details): UTC, to the second."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t is not None else "-"


def new_run_for(job: Job, template: JobTemplate, **fields: Any) -> Run:
    """The run row of a new job (PENDING unless ``fields`` say otherwise); its workflow id is fixed here."""
    run_id = new_id("run")
    return Run(
        id=run_id,
        job_id=job.id,
        client_id=job.client_id,
        job_template_id=template.id,
        fleet_template_id=template.fleet_template_id,
        workflow_id=workflow_id_for(run_id),
        job_template_version=template.version,
        status=fields.pop("status", RunStatus.PENDING),
        **fields,
    )


def run_input_for(settings: Settings, run: Run, job: Job, template: JobTemplate) -> RunInput:
    return RunInput(
        run_id=run.id,
        job_type=JobType(job.type),
        latest_finish=job.latest_finish,
        max_runtime_sec=template.max_runtime_sec,
        replan_interval_sec=settings.replan_interval_sec,
        monitor_poll_sec=settings.monitor_poll_sec,
        retry=retry_spec(job, template),
    )


def retry_spec(job: Job, template: JobTemplate) -> RetrySpec | None:
    """The run's retry policy: the job's override, else its template's; None (no retries) without one."""
    policy = job.retry_policy if job.retry_policy is not None else template.retry_policy
    if not policy or int(policy.get("max_attempts", 1)) <= 1:
        return None
    return RetrySpec.model_validate(policy)


async def start_run_workflow(
    client: TemporalClient, settings: Settings, run: Run, job: Job, template: JobTemplate
) -> bool:
    """Start the run's workflow (id ``run.workflow_id``); True if this call started it, False if it already
    existed (harmless: the id is fixed per run, so racing starters cannot make two workflows for one run)."""
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
    from temporalio.exceptions import WorkflowAlreadyStartedError

    when = (
        f"at {_when(job.intended_time)}"
        if job.type == JobType.ONE_TIME and job.intended_time
        else f"within {_when(job.earliest_start)} .. {_when(job.latest_finish)}"
    )
    try:
        await client.start_workflow(
            "JobRunWorkflow",
            run_input_for(settings, run, job, template),
            id=run.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_CLIENT_ID), run.client_id),
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_JOB_TEMPLATE_ID), template.id),
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_RUN_STATUS), RunStatus.PENDING),
                ]
            ),
            static_summary=(f"{template.name}: {job.type} {when}, {job.risk_mode}, {run.fleet_template_id}"),
            static_details=f"client {run.client_id}, job {job.id}, run {run.id}, start {when}",
            rpc_timeout=timedelta(seconds=10),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


# ---------------------------------------------------------------- checks
def request_hash(body: JobCreate) -> str:
    doc = body.model_dump(mode="json")
    if doc.get("regions") is None:  # a body without regions hashes as before issue 14 (stored keys match)
        doc.pop("regions", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def check_limits(settings: Settings, body: JobCreate) -> None:
    """Dates past the window / ahead limits: Unprocessable naming the setting (before any DB work)."""
    errors = window_limit_errors(
        settings,
        datetime.now(UTC),
        intended_time=body.intended_time,
        earliest_start=body.earliest_start,
        latest_finish=body.latest_finish,
    )
    if errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in errors), errors)


def check_times(
    session: Session,
    settings: Settings,
    client: Client,
    template: JobTemplate,
    body: JobCreate,
    plan_timer: PlanTimer | None = None,
) -> None:
    """A ONE_TIME job not in the past; a RESCHEDULABLE one whose window is in the future and feasible."""
    now = datetime.now(UTC)
    if body.type == JobType.ONE_TIME:
        assert body.intended_time is not None  # JobCreate's validator requires it for ONE_TIME
        if body.intended_time < now - timedelta(seconds=settings.past_tolerance_sec):
            raise Unprocessable(
                f"intended_time {body.intended_time.isoformat()} is in the past",
                [field_error("intended_time", "must not be in the past")],
            )
        return
    assert body.earliest_start is not None and body.latest_finish is not None  # required for RESCHEDULABLE
    if body.latest_finish <= now:
        raise Unprocessable(
            f"latest_finish {body.latest_finish.isoformat()} is in the past",
            [field_error("latest_finish", "must be in the future")],
        )
    earliest = max(body.earliest_start, now)
    try:
        with (plan_timer or contextlib.nullcontext)():
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
                regions=list(body.regions) if body.regions is not None else None,
            )
    except InfeasibleWindow as exc:
        raise Unprocessable(f"infeasible window: {exc}", [field_error("latest_finish", str(exc))]) from exc


# ---------------------------------------------------------------- submit
def _existing(session: Session, client: Client, idempotency_key: str) -> Submitted | None:
    job = session.scalar(
        select(Job).where(Job.client_id == client.id, Job.idempotency_key == idempotency_key)
    )
    if job is None:
        return None
    run = session.scalar(select(Run).where(Run.job_id == job.id).order_by(Run.created_at))
    assert run is not None  # a job is inserted with its run
    template = template_at(session, job.job_template_id, job.job_template_version)
    session.commit()
    return Submitted(job, run, template, replayed=True)


_JOBS, _RUNS = cast(Table, Job.__table__), cast(Table, Run.__table__)


def _row(obj: Job | Run, table: Table) -> dict[str, Any]:
    """The column values set on a new ORM object (the table's defaults fill the others)."""
    return {c.key: obj.__dict__[c.key] for c in table.columns if c.key in obj.__dict__}


def check_launchable_args(template: JobTemplate, args: dict[str, Any] | None) -> None:
    """Unprocessable (field ``args``) when the template's default_args merged with ``args`` could never be
    given to the app (too big for the OS: ``models.api.args_launch_problem``). Each part alone was checked
    by its model; only the merge can still be too big."""
    merged = {**(template.default_args or {}), **(args or {})}
    if problem := args_launch_problem(merged):
        msg = f"{problem} (the template's default_args merged with these args)"
        raise Unprocessable(f"args: {msg}", [field_error("args", msg)])


def insert_job(
    session: Session,
    settings: Settings,
    client: Client,
    body: JobCreate,
    idempotency_key: str | None,
    req_hash: str,
    plan_timer: PlanTimer | None = None,
    template_version: int | None = None,
    rerun_of: str | None = None,
) -> Submitted:
    """Blocking: idempotency lookup, validation and planning, then insert job + run and COMMIT. The job
    uses the template's current version, or ``template_version`` (a rerun); a retired template is a
    Conflict."""
    if idempotency_key:
        found = _existing(session, client, idempotency_key)
        if found is not None:
            return found
    template = usable_template(session, client, body.job_template_id)
    if template_version is not None:
        template = template_at(session, template.id, template_version)
    region_errors = job_region_errors(client, template, body.regions)
    if not region_errors:
        try:  # the client may have dropped regions its template still lists
            candidate_regions(client, template, body.regions)
        except NoCandidateRegion as exc:
            region_errors = [field_error("regions", str(exc))]
    if region_errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in region_errors), region_errors)
    check_launchable_args(template, body.args)
    check_times(session, settings, client, template, body, plan_timer)
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
        regions=list(body.regions) if body.regions is not None else None,
        retry_policy=body.retry_policy.model_dump() if body.retry_policy is not None else None,
        job_template_version=template.version,
        rerun_of=rerun_of,
    )
    job.created_at = utcnow()
    run = new_run_for(job, template, created_at=job.created_at, updated_at=job.created_at)
    try:  # one short transaction: the template read, the plan's reads and the two inserts, then COMMIT
        # Core INSERTs of the rows as built (the job first: FK): no unit-of-work flush for two new rows
        session.execute(_JOBS.insert(), _row(job, _JOBS))
        session.execute(_RUNS.insert(), _row(run, _RUNS))
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request with the same Idempotency-Key won
        found = _existing(session, client, idempotency_key) if idempotency_key else None
        if found is None:
            raise
        return found
    return Submitted(job, run, template)


def delete_job(session: Session, job_id: str, run_id: str) -> None:
    """Blocking: the workflow could not start, so the job leaves no trace (the run first: FK)."""
    session.execute(delete(Run).where(Run.id == run_id))
    session.execute(delete(Job).where(Job.id == job_id))
    session.commit()


async def create_job(
    session: Session,
    settings: Settings,
    client: Client,
    body: JobCreate,
    idempotency_key: str | None,
    temporal: TemporalSource,
    plan_timer: PlanTimer | None = None,
    *,
    template_version: int | None = None,
    rerun_of: str | None = None,
    req_hash: str | None = None,
) -> Submitted:
    """Submit a job (see the module docstring). Every database step runs in a worker thread and commits
    before the workflow start is awaited, so no transaction stays open across the Temporal call. A rerun
    passes the template version, the run it reruns and its own request hash (what the Idempotency-Key
    is compared on)."""
    req_hash = req_hash or request_hash(body)
    check_limits(settings, body)
    sub = await anyio.to_thread.run_sync(
        functools.partial(
            insert_job,
            session,
            settings,
            client,
            body,
            idempotency_key,
            req_hash,
            plan_timer,
            template_version,
            rerun_of,
        )
    )
    if sub.replayed:
        if sub.job.request_hash != req_hash:
            raise Conflict("Idempotency-Key was already used with a different request body")
        if sub.run.status == "PENDING":  # the first request may have died before starting the workflow
            await start_run_workflow(await temporal(), settings, sub.run, sub.job, sub.template)
        return sub
    try:
        await start_run_workflow(await temporal(), settings, sub.run, sub.job, sub.template)
    except Exception as exc:
        log.warning(
            "could not start workflow for run %s: %s",
            sub.run.id,
            type(exc).__name__,
            extra={"run_id": sub.run.id},
        )
        await anyio.to_thread.run_sync(delete_job, session, sub.job.id, sub.run.id)
        if isinstance(exc, Unavailable):
            raise
        raise Unavailable(
            "could not start the run's workflow (Temporal unavailable); nothing was created, retry later"
        ) from exc
    return sub


# ---------------------------------------------------------------- read
def list_jobs(
    session: Session, client: Client, limit: int, cursor: str | None, job_template_id: str | None = None
) -> tuple[list[tuple[Job, list[str]]], str | None]:
    """The client's jobs, newest first, each with its run ids."""
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
    return [(j, runs.get(j.id, [])) for j in rows], nxt


def get_job(session: Session, client: Client, job_id: str) -> tuple[Job, list[str]]:
    job = owned(session, Job, job_id, client, "job")
    return job, list(session.scalars(select(Run.id).where(Run.job_id == job.id)))


# ---------------------------------------------------------------- rerun
def rerun_request(
    session: Session,
    client: Client,
    run_id: str,
    intended_time: datetime | None = None,
    earliest_start: datetime | None = None,
) -> tuple[JobCreate, int | None, str]:
    """Blocking: the job request that reruns ``run_id`` (the client's; NotFound otherwise) with the same
    template version, args, risk mode, weights, regions and window shape: a ONE_TIME job at
    ``intended_time`` (default now); a RESCHEDULABLE job whose window has the same length from
    ``earliest_start`` (default now). Also the template version and the request hash the
    Idempotency-Key is compared on. Ends the read transaction."""
    run = owned(session, Run, run_id, client, "run")
    job = session.get_one(Job, run.job_id)
    version = job.job_template_version or run.job_template_version
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "job_template_id": job.job_template_id,
        "type": job.type,
        "risk_mode": job.risk_mode,
        "weights": dict(job.weights or {}),
        "args": dict(job.args) if job.args else None,
        "regions": list(job.regions) if job.regions is not None else None,
        "retry_policy": dict(job.retry_policy) if job.retry_policy is not None else None,
    }
    wrong = (
        ("earliest_start", earliest_start)
        if job.type == JobType.ONE_TIME
        else ("intended_time", intended_time)
    )
    if wrong[1] is not None:
        raise Unprocessable(
            f"{wrong[0]} does not apply to rerunning a {job.type} job",
            [field_error(wrong[0], f"not for a {job.type} job")],
        )
    if job.type == JobType.ONE_TIME:
        doc["intended_time"] = intended_time or now
    else:
        assert job.earliest_start is not None and job.latest_finish is not None
        start = earliest_start or now
        doc["earliest_start"] = start
        doc["latest_finish"] = start + (job.latest_finish - job.earliest_start)
    session.commit()
    asked = {
        "rerun_of": run.id,
        "intended_time": intended_time.isoformat() if intended_time else None,
        "earliest_start": earliest_start.isoformat() if earliest_start else None,
    }
    req_hash = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    try:
        body = JobCreate.model_validate(doc)
    except ValidationError as exc:  # e.g. a window whose shape no longer passes today's rules
        errors = [field_error(".".join(map(str, e["loc"])) or "body", e["msg"]) for e in exc.errors()]
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in errors), errors) from exc
    return body, version, req_hash


async def rerun(
    session: Session,
    settings: Settings,
    client: Client,
    run_id: str,
    idempotency_key: str | None,
    temporal: TemporalSource,
    plan_timer: PlanTimer | None = None,
    intended_time: datetime | None = None,
    earliest_start: datetime | None = None,
) -> Submitted:
    """``POST /v1/runs/{id}/rerun``: a new job + run like ``run_id``'s (:func:`rerun_request`), submitted
    like any job (same Idempotency-Key + same rerun request -> the same job). Conflict for a retired
    template; Unprocessable for a window that is no longer feasible."""
    body, version, req_hash = await anyio.to_thread.run_sync(
        rerun_request, session, client, run_id, intended_time, earliest_start
    )
    return await create_job(
        session,
        settings,
        client,
        body,
        idempotency_key,
        temporal,
        plan_timer,
        template_version=version,
        rerun_of=run_id,
        req_hash=req_hash,
    )
