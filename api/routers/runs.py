"""Runs: status, plan, carbon figures, logs and best-effort cancel."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select, update

from api.deps import ClientDep, ServicesDep, SessionDep, owned
from api.errors import Conflict, NotFound, ServiceUnavailable
from api.pagination import CursorQ, LimitQ, paginate
from models.api import TERMINAL, CancelIn, CarbonOut, LogsOut, Page, RunOut, RunStatus
from models.db import Run, utcnow
from models.workflow import CancelRequest

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
        ),
    )


@router.get("", response_model=Page[RunOut], summary="List runs, newest first, with filters")
def list_runs(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    job_template_id: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[RunOut]:
    stmt = select(Run).where(Run.client_id == client.id)
    if status_:
        stmt = stmt.where(Run.status == status_.value)
    if job_template_id:
        stmt = stmt.where(Run.job_template_id == job_template_id)
    if job_id:
        stmt = stmt.where(Run.job_id == job_id)
    rows, nxt = paginate(session, stmt, Run, limit, cursor)
    return Page[RunOut](items=[run_out(r) for r in rows], next_cursor=nxt)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: str, client: ClientDep, session: SessionDep) -> RunOut:
    return run_out(owned(session, Run, run_id, client, "run"))


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunOut,
    summary="Best-effort cancel: signals the workflow; the run ends CANCELLED",
)
async def cancel_run(
    run_id: str, client: ClientDep, session: SessionDep, services: ServicesDep, body: CancelIn | None = None
) -> RunOut:
    r = owned(session, Run, run_id, client, "run")
    if r.status in TERMINAL:
        raise Conflict(f"run {run_id} already finished with status {r.status}; nothing to cancel")
    temporal = await services.temporal_client()
    reason = (body.reason if body else None) or "cancelled through the API"
    try:
        await temporal.get_workflow_handle(r.workflow_id).signal("cancel", CancelRequest(reason=reason))
    except Exception as exc:
        raise ServiceUnavailable("could not reach the run's workflow; retry the cancel") from exc
    session.execute(
        update(Run)
        .where(Run.id == r.id, Run.status.not_in([s.value for s in TERMINAL]))
        .values(status="CANCELLING", status_reason=reason, updated_at=utcnow())
    )
    session.commit()
    session.refresh(r)
    return run_out(r)


@router.get("/{run_id}/logs", response_model=LogsOut, summary="Tail of the app's log (latest attempt)")
async def run_logs(
    run_id: str,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    tail_bytes: Annotated[int, Query(ge=1, le=1024 * 1024)] = 65536,
) -> LogsOut:
    r = owned(session, Run, run_id, client, "run")
    if not r.fleet:
        raise NotFound(f"run {run_id} has no logs yet (status {r.status})")
    from fleets import get_driver
    from fleets.base import FleetHandle

    handle = FleetHandle(
        driver=r.fleet["driver"],
        run_id=r.fleet["run_id"],
        attempt=r.fleet["attempt"],
        ref=r.fleet.get("ref", {}),
    )
    driver = get_driver(handle.driver, services.settings)
    text = await asyncio.to_thread(driver.logs, handle, tail_bytes)
    return LogsOut(run_id=r.id, attempt=handle.attempt, text=text)
