"""Recurring jobs: ``/v1/recurring-jobs``, each one a Temporal Schedule. The use cases live in
services/recurring.py (DB work in a worker thread, committed before Temporal is awaited; Temporal's Schedule
is the source of truth for paused / deleted); this router only translates HTTP to them and back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from starlette.concurrency import run_in_threadpool

from api.deps import ClientDep, PrincipalDep, ServicesDep, SessionDep
from api.errors import NotFound
from api.pagination import CursorQ, LimitQ
from models.api import Page
from models.db import RecurringJob
from models.recurring import (
    NominalOut,
    PauseIn,
    RecurringJobCreate,
    RecurringJobOut,
    RecurringJobPatch,
    RecurringStatus,
    TriggerOut,
)
from services import recurring as svc

router = APIRouter(prefix="/v1/recurring-jobs", tags=["recurring jobs"])
MAX_NEXT = 50
_503: dict[int | str, dict[str, Any]] = {
    503: {"description": "Temporal unavailable: nothing was changed; retry"}
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "The recurring job is deleted (or its Schedule was deleted outside the API)"}
}


def _out(
    rj: RecurringJob,
    template_name: str,
    n_next: int = 0,
    nominals: list[tuple[datetime, datetime, datetime]] | None = None,
) -> RecurringJobOut:
    return RecurringJobOut(
        id=rj.id,
        job_template_id=rj.job_template_id,
        name=rj.name,
        cron=rj.cron,
        interval=rj.interval,
        time_zone=rj.time_zone,
        margin_before=rj.margin_before,
        margin_after=rj.margin_after,
        deadline=rj.deadline,
        risk_mode=rj.risk_mode,
        weights=rj.weights or {},
        args=rj.args or {},
        start_at=rj.start_at,
        end_at=rj.end_at,
        overlap=rj.overlap,
        catchup_window=rj.catchup_window,
        status=rj.status,
        status_reason=rj.status_reason,
        schedule_id=rj.schedule_id,
        summary=svc.summary(rj, template_name),
        created_at=rj.created_at,
        updated_at=rj.updated_at,
        deleted_at=rj.deleted_at,
        next=[
            NominalOut(nominal_time=t, margin_start=lo, margin_end=hi)
            for t, lo, hi in (nominals if nominals is not None else svc.next_nominals(rj, n_next))
        ],
    )


# ---------------------------------------------------------------- create
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RecurringJobOut,
    responses=_503
    | {409: {"description": "The client has ORCH_MAX_RECURRING_JOBS_PER_CLIENT recurring jobs already"}},
    summary="Create a recurring job: a Temporal Schedule whose firings each make one job + run",
)
async def create_recurring(
    body: RecurringJobCreate, client: ClientDep, session: SessionDep, services: ServicesDep
) -> RecurringJobOut:
    rj, template = await svc.create_recurring(
        session, services.settings, client, body, services.temporal_client
    )
    return await run_in_threadpool(_out, rj, template.name, 5)


# ---------------------------------------------------------------- read
@router.get("", response_model=Page[RecurringJobOut], summary="List recurring jobs, newest first")
def list_recurring(
    principal: PrincipalDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    status_: Annotated[RecurringStatus | None, Query(alias="status")] = None,
    job_template_id: Annotated[str | None, Query(max_length=40)] = None,
    include_deleted: Annotated[bool, Query(description="Also list deleted ones")] = False,
    client_id: Annotated[
        str | None, Query(max_length=40, description="Admin key only: the recurring jobs of this client")
    ] = None,
) -> Page[RecurringJobOut]:
    """A client key lists its own; the admin key every client's (also a suspended one's), or one client's
    with ``client_id``."""
    rows, names, nxt = svc.list_recurring(
        session,
        principal.client,
        limit,
        cursor,
        status_.value if status_ else None,
        job_template_id,
        include_deleted,
        client_id,
    )
    return Page[RecurringJobOut](
        items=[_out(r, names.get(r.job_template_id, "?")) for r in rows], next_cursor=nxt
    )


@router.get(
    "/{recurring_id}",
    response_model=RecurringJobOut,
    summary="A recurring job, its next nominal times, the next firing's planned start, Temporal's view",
)
async def get_recurring(
    recurring_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    next_: Annotated[int, Query(alias="next", ge=0, le=MAX_NEXT, description="How many nominal times")] = 5,
) -> RecurringJobOut:
    """A client key reads its own; the admin key any (also a suspended client's)."""
    client = await run_in_threadpool(svc.acting_client, session, principal.client, recurring_id)
    view = await svc.get_recurring(
        session, services.settings, client, recurring_id, services.temporal_client, next_, services.plan_timer
    )
    out = await run_in_threadpool(_out, view.job, view.template.name, next_, view.nominals)
    out.schedule = view.schedule
    out.next_preview, out.next_preview_error = view.next_preview, view.next_preview_error
    return out


# ---------------------------------------------------------------- update
@router.patch(
    "/{recurring_id}", response_model=RecurringJobOut, responses=_409 | _503, summary="Change a recurring job"
)
async def update_recurring(
    recurring_id: str,
    body: RecurringJobPatch,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
) -> RecurringJobOut:
    row, template = await svc.update_recurring(
        session, services.settings, client, recurring_id, body, services.temporal_client
    )
    return await run_in_threadpool(_out, row, template.name, 5)


# ---------------------------------------------------------------- pause / resume / trigger
@router.post(
    "/{recurring_id}/pause",
    response_model=RecurringJobOut,
    responses=_409 | _503,
    summary="Pause: no new firings",
)
async def pause_recurring(
    recurring_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    body: PauseIn | None = None,
) -> RecurringJobOut:
    """A client key pauses its own; the admin key any (also a suspended client's)."""
    client = await run_in_threadpool(svc.acting_client, session, principal.client, recurring_id)
    note = (body.note if body else None) or "paused through the API"
    row, template = await svc.change_state(
        session, client, recurring_id, "pause", services.temporal_client, note
    )
    return await run_in_threadpool(_out, row, template.name)


@router.post(
    "/{recurring_id}/resume", response_model=RecurringJobOut, responses=_409 | _503, summary="Resume firings"
)
async def resume_recurring(
    recurring_id: str, principal: PrincipalDep, session: SessionDep, services: ServicesDep
) -> RecurringJobOut:
    """A client key resumes its own; the admin key any."""
    client = await run_in_threadpool(svc.acting_client, session, principal.client, recurring_id)
    row, template = await svc.change_state(session, client, recurring_id, "resume", services.temporal_client)
    return await run_in_threadpool(_out, row, template.name, 5)


@router.post(
    "/{recurring_id}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TriggerOut,
    responses=_409 | _503,
    summary="One firing now (its margin starts now); also while paused",
)
async def trigger_recurring(
    recurring_id: str, client: ClientDep, session: SessionDep, services: ServicesDep
) -> TriggerOut:
    rj, _ = await svc.change_state(session, client, recurring_id, "trigger", services.temporal_client)
    return TriggerOut(
        recurring_job_id=rj.id,
        triggered_at=datetime.now(UTC),
        detail="firing requested; its run appears in GET /v1/runs?recurring_job_id= in a moment",
    )


# ---------------------------------------------------------------- delete
@router.delete(
    "/{recurring_id}",
    response_model=RecurringJobOut,
    responses=_503,
    summary="Delete: the Schedule goes, past runs stay; ?cancel_runs=true also cancels runs in flight",
)
async def delete_recurring(
    recurring_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    cancel_runs: Annotated[
        bool, Query(description="Also cancel this recurring job's unfinished runs")
    ] = False,
) -> RecurringJobOut:
    """A client key deletes its own; the admin key any."""
    client = await run_in_threadpool(svc.acting_client, session, principal.client, recurring_id)
    row, template = await svc.delete_recurring(
        session, client, recurring_id, cancel_runs, services.temporal_client
    )
    return await run_in_threadpool(_out, row, template.name)


__all__ = ["router", "NotFound"]
