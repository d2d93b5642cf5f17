"""Runs: status, plan, carbon figures, logs and best-effort cancel (``services.runs``).

A client key sees its own runs; the admin key reads and cancels any run (e.g. a suspended client's, whose
own key gets 403). Handlers never block the event loop on the DB (sync handlers run in the thread pool; the
async ones call services that use worker threads) and never hold a DB transaction open while awaiting
Temporal or S3.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import PrincipalDep, ServicesDep, SessionDep, request_session, tenant_of
from api.pagination import CursorQ, LimitQ
from models.api import AttemptOut, CancelIn, CarbonOut, JobCreated, LogsOut, Page, RerunIn, RunOut, RunStatus
from models.audit import PlanAuditOut
from models.db import Run
from services import jobs, runs
from services.plan_audit import plan_record

router = APIRouter(prefix="/v1/runs", tags=["runs"])


def run_out(r: Run) -> RunOut:
    saved = None
    if r.carbon_chosen_g is not None and r.carbon_earliest_g:
        saved = round(100.0 * (r.carbon_earliest_g - r.carbon_chosen_g) / r.carbon_earliest_g, 2)
    return RunOut(
        run_id=r.id,
        job_id=r.job_id,
        workflow_id=r.workflow_id,
        job_template_id=r.job_template_id,
        fleet_template_id=r.fleet_template_id,
        status=r.status,
        status_reason=r.status_reason,
        plan=r.plan,
        created_at=r.created_at,
        updated_at=r.updated_at,
        planned_start=r.planned_start,
        started_at=r.started_at,
        finished_at=r.finished_at,
        attempts=r.attempts,
        exit_code=r.exit_code,
        capacity=r.capacity,
        fleet=r.fleet,
        runtime_sec=r.runtime_sec,
        carbon=CarbonOut(
            estimated_gco2e_chosen=r.carbon_chosen_g,
            estimated_gco2e_earliest=r.carbon_earliest_g,
            saved_pct=saved,
            expected_saving_pct=(r.plan or {}).get("expected_saving_pct"),
            saving_sigma_pct=(r.plan or {}).get("saving_sigma_pct"),
            realised_gco2e=r.carbon_realised_g,
            measured_gco2e=r.carbon_actual_g,
            measured_gco2e_baseline=r.carbon_actual_baseline_g,
            measured_intensity=r.carbon_actual_intensity,
            measured_source=r.carbon_actual_source,
        ),
        recurring_job_id=r.recurring_job_id,
        region=r.region,
        attempt_history=[
            AttemptOut(**a, log_url=f"/v1/runs/{r.id}/logs?attempt={a['attempt']}")
            for a in runs.attempt_history(r)
        ],
        job_template_version=r.job_template_version or 1,
    )


@router.get("", response_model=Page[RunOut], summary="List runs, newest first, with filters")
def list_runs(
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    job_template_id: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[str | None, Query(max_length=40)] = None,
    recurring_job_id: Annotated[str | None, Query(max_length=40)] = None,
    client_id: Annotated[
        str | None, Query(max_length=40, description="Admin key only: runs of this client")
    ] = None,
) -> Page[RunOut]:
    rows, nxt = runs.list_runs(
        session,
        principal.client,
        limit,
        cursor,
        status=status_,
        job_template_id=job_template_id,
        job_id=job_id,
        client_id=client_id,
        recurring_job_id=recurring_job_id,
    )
    return Page[RunOut](items=[run_out(r) for r in rows], next_cursor=nxt)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: str, principal: PrincipalDep, session: SessionDep) -> RunOut:
    return run_out(runs.get_run(session, run_id, principal.client))


@router.get(
    "/{run_id}/plan",
    response_model=PlanAuditOut,
    summary="The plan's audit record: the forecast it used, every candidate, the rule's figures",
    responses={409: {"description": "The run has no audit record (not planned yet, or planned before them)"}},
)
def get_run_plan(run_id: str, principal: PrincipalDep, session: SessionDep) -> PlanAuditOut:
    """What the plan in force was decided from, kept as long as the run: the forecast series of every region
    (g/kWh and 1-sigma at decision time), the provider, its zone and fallback reason, the signal, the
    runtime model (p50/p90), the fleet power, the baseline and chosen starts, every candidate and the
    rule's figures, the rationale, when it was decided, and what the run stores from it. Any stored
    saving recomputes from it: emissions = ``power_kw`` x the integral of the series over
    ``[start, start + p50]``. Earlier plans the run followed are listed in ``earlier``."""
    return PlanAuditOut.model_validate(plan_record(session, run_id, principal.client))


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
    summary="Best-effort cancel: signals the workflow; the run ends CANCELLED",
)
async def cancel_run(
    run_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    body: CancelIn | None = None,
) -> RunOut:
    """A run with a workflow is signalled (CANCELLING, then CANCELLED once its fleet is gone); one with no
    workflow yet (PENDING) is marked CANCELLED directly (``services.runs.cancel_run``)."""
    r = await runs.cancel_run(
        session, run_id, principal.client, body.reason if body else None, services.temporal_client
    )
    return run_out(r)


@router.post(
    "/{run_id}/rerun",
    status_code=status.HTTP_201_CREATED,
    response_model=JobCreated,
    summary="Run again: a new job + run with the same template version, args and window shape "
    "(honours Idempotency-Key; 409 for a retired template)",
)
async def rerun(
    run_id: str,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    body: RerunIn | None = None,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="Same key + same rerun request -> same job")
    ] = None,
) -> JobCreated:
    """A ONE_TIME run is rerun now (or at ``intended_time``); a RESCHEDULABLE one in a window of the same
    length from now (or from ``earliest_start``), planned again (``services.jobs.rerun``)."""
    client = tenant_of(principal)
    async with request_session(services) as session:
        sub = await jobs.rerun(
            session,
            services.settings,
            client,
            run_id,
            idempotency_key,
            services.temporal_client,
            services.plan_timer,
            intended_time=body.intended_time if body else None,
            earliest_start=body.earliest_start if body else None,
        )
    if sub.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    run = sub.run
    return JobCreated(job_id=sub.job.id, run_id=run.id, workflow_id=run.workflow_id, status=run.status)


@router.get("/{run_id}/logs", response_model=LogsOut, summary="Tail of the app's log (an attempt's)")
async def run_logs(
    run_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    tail_bytes: Annotated[int, Query(ge=1, le=1024 * 1024)] = 65536,
    attempt: Annotated[
        int | None,
        Query(ge=1, le=1000, description="The attempt whose log to read (default: the latest launched)"),
    ] = None,
) -> LogsOut:
    """Read from the artifact store, where every fleet driver puts the app's log (one per attempt)."""
    got = await runs.run_log(
        session, services.s3, services.settings.s3_bucket, run_id, principal.client, tail_bytes, attempt
    )
    return LogsOut(run_id=got.run_id, attempt=got.attempt, text=got.text)
