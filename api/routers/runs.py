"""Runs: status, plan, carbon figures, logs and best-effort cancel.

A client key sees its own runs; the admin key reads and cancels any run (e.g. a suspended client's, whose
own key gets 403). Handlers never block the event loop on the DB (sync handlers run in the thread pool; async
ones use ``run_in_threadpool``) and never hold a DB transaction open while awaiting Temporal.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal, PrincipalDep, ServicesDep, SessionDep, owned
from api.errors import Conflict, NotFound, ServiceUnavailable
from api.pagination import CursorQ, LimitQ, paginate
from models.api import TERMINAL, CancelIn, CarbonOut, LogsOut, Page, RunOut, RunStatus
from models.db import Run, utcnow
from models.workflow import CancelRequest

router = APIRouter(prefix="/v1/runs", tags=["runs"])
FINAL = sorted(s.value for s in TERMINAL)


def visible_run(session: Session, run_id: str, principal: Principal) -> Run:
    """The run if the caller may see it: the admin any run, a client its own; otherwise 404."""
    if principal.client is not None:
        return owned(session, Run, run_id, principal.client, "run")
    r = session.get(Run, run_id)
    if r is None:
        raise NotFound(f"run {run_id} not found")
    return r


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
        recurring_job_id=r.recurring_job_id,
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
    stmt = select(Run)
    if principal.client is not None:
        stmt = stmt.where(Run.client_id == principal.client.id)
    if client_id:  # a client key asking for another client's runs simply gets none
        stmt = stmt.where(Run.client_id == client_id)
    if status_:
        stmt = stmt.where(Run.status == status_.value)
    if job_template_id:
        stmt = stmt.where(Run.job_template_id == job_template_id)
    if job_id:
        stmt = stmt.where(Run.job_id == job_id)
    if recurring_job_id:
        stmt = stmt.where(Run.recurring_job_id == recurring_job_id)
    rows, nxt = paginate(session, stmt, Run, limit, cursor)
    return Page[RunOut](items=[run_out(r) for r in rows], next_cursor=nxt)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: str, principal: PrincipalDep, session: SessionDep) -> RunOut:
    return run_out(visible_run(session, run_id, principal))


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
    """A run with a workflow is signalled (CANCELLING, then CANCELLED once its fleet is gone). A run with no
    workflow (PENDING: the API died before starting it) is marked CANCELLED directly; the reconciler never
    starts a run that is no longer PENDING, and a workflow re-checks its record before every launch."""

    def load() -> Run:
        r = visible_run(session, run_id, principal)
        session.commit()  # no transaction stays open while we await Temporal
        return r

    r = await run_in_threadpool(load)
    if r.status in TERMINAL:
        raise Conflict(f"run {run_id} already finished with status {r.status}; nothing to cancel")
    reason = (body.reason if body else None) or (
        "cancelled by the admin" if principal.is_admin else "cancelled through the API"
    )
    req = CancelRequest(reason=reason)
    handle = None
    try:
        handle = (await services.temporal_client()).get_workflow_handle(r.workflow_id)
        await handle.signal("cancel", req)
        has_workflow = True
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND and r.status != "PENDING":
            raise ServiceUnavailable("could not reach the run's workflow; retry the cancel") from exc
        has_workflow = False  # none (or already closed): nothing will carry the cancel out, so we do
    except ServiceUnavailable:
        if r.status != "PENDING":
            raise
        has_workflow = False  # Temporal unreachable, run not started: its launch check will see CANCELLED
    except Exception as exc:
        raise ServiceUnavailable("could not reach the run's workflow; retry the cancel") from exc

    def store() -> Run:
        now = utcnow()
        values = {"status": "CANCELLING", "status_reason": reason, "updated_at": now}
        if not has_workflow:
            values |= {"status": "CANCELLED", "finished_at": now}
        session.execute(update(Run).where(Run.id == r.id, Run.status.not_in(FINAL)).values(**values))
        session.commit()
        session.refresh(r)
        return r

    r = await run_in_threadpool(store)
    if not has_workflow and handle is not None:
        try:  # the reconciler may have started it a moment ago: tell it too (best effort)
            await handle.signal("cancel", req)
        except Exception:  # noqa: BLE001, S110 - none there: nothing to tell
            pass
    return run_out(r)


@router.get("/{run_id}/logs", response_model=LogsOut, summary="Tail of the app's log (latest attempt)")
async def run_logs(
    run_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    tail_bytes: Annotated[int, Query(ge=1, le=1024 * 1024)] = 65536,
) -> LogsOut:
    r = await run_in_threadpool(visible_run, session, run_id, principal)
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
