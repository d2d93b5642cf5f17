"""Recurring jobs: ``/v1/recurring-jobs``, each one a Temporal Schedule (services/recurring.py).

DB work runs in the threadpool and commits before Temporal is awaited. Temporal's Schedule is the source of
truth for paused / deleted: ``GET /v1/recurring-jobs/{id}`` repairs the row from it (services/recurring.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClientDep, Services, ServicesDep, SessionDep, owned
from api.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable, field_error
from api.pagination import CursorQ, LimitQ, paginate
from models.api import Page
from models.db import JobTemplate, RecurringJob, Run, new_id, utcnow
from models.domain import TERMINAL_STATUSES
from models.recurring import (
    NominalOut,
    PauseIn,
    RecurringJobCreate,
    RecurringJobOut,
    RecurringJobPatch,
    RecurringStatus,
    ScheduleInfoOut,
    TriggerOut,
)
from models.workflow import CancelRequest
from scheduling.calendar import CalendarError
from services import recurring as svc

log = logging.getLogger("orch.api")
router = APIRouter(prefix="/v1/recurring-jobs", tags=["recurring jobs"])
MAX_NEXT = 50
_503: dict[int | str, dict[str, Any]] = {
    503: {"description": "Temporal unavailable: nothing was changed; retry"}
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "The recurring job is deleted (or its Schedule was deleted outside the API)"}
}


def _calendar_error(exc: CalendarError) -> Unprocessable:
    return Unprocessable(f"{exc.field}: {exc}", [field_error(exc.field, str(exc))])


def _out(rj: RecurringJob, template_name: str, n_next: int = 0) -> RecurringJobOut:
    cal = svc.calendar_of(rj)
    nxt: list[NominalOut] = []
    if n_next and rj.status != "deleted":
        for t in cal.nominal_times(datetime.now(UTC), n_next):
            lo, hi = cal.margin(t)
            nxt.append(NominalOut(nominal_time=t, margin_start=lo, margin_end=hi))
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
        next=nxt,
    )


async def _temporal(services: Services):
    return await services.temporal_client()


def _unavailable(exc: Exception, what: str) -> ServiceUnavailable:
    log.warning("Temporal call failed (%s): %s", what, type(exc).__name__)
    return ServiceUnavailable(f"could not {what} (Temporal unavailable); retry later")


# ---------------------------------------------------------------- create
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RecurringJobOut,
    responses=_503,
    summary="Create a recurring job: a Temporal Schedule whose firings each make one job + run",
)
async def create_recurring(
    body: RecurringJobCreate, client: ClientDep, session: SessionDep, services: ServicesDep
) -> RecurringJobOut:
    def insert():
        template = owned(session, JobTemplate, body.job_template_id, client, "job template")
        rid = new_id("rec")
        rj = RecurringJob(
            id=rid,
            client_id=client.id,
            job_template_id=template.id,
            name=body.name,
            cron=body.cron,
            interval=body.interval,
            time_zone=body.time_zone,
            margin_before=body.margin_before.strip().upper(),
            margin_after=body.margin_after.strip().upper(),
            deadline=body.deadline.strip().upper() if body.deadline else None,
            risk_mode=body.risk_mode.value,
            weights=body.weights.model_dump(),
            args=dict(body.args or {}),
            start_at=body.start_at,
            end_at=body.end_at,
            overlap=body.overlap.value,
            catchup_window=body.catchup_window.strip().upper(),
            status="paused" if body.paused else "active",
            schedule_id=svc.schedule_id_for(rid),
        )
        try:
            cal = svc.validate_row(rj)
        except CalendarError as exc:
            raise _calendar_error(exc) from exc
        if rj.interval:
            rj.interval = rj.interval.strip().upper()
        rj.cron = cal.cron
        session.add(rj)
        session.commit()
        return rj, template

    rj, template = await run_in_threadpool(insert)
    try:
        await svc.create_schedule(await _temporal(services), services.settings, rj, template)
    except Exception as exc:

        def drop():
            session.delete(session.get(RecurringJob, rj.id))
            session.commit()

        await run_in_threadpool(drop)
        if isinstance(exc, ServiceUnavailable):
            raise
        raise _unavailable(exc, "create the Temporal Schedule; nothing was created") from exc
    return await run_in_threadpool(_out, rj, template.name, 5)


# ---------------------------------------------------------------- read
@router.get("", response_model=Page[RecurringJobOut], summary="List recurring jobs, newest first")
def list_recurring(
    client: ClientDep,
    session: SessionDep,
    limit: LimitQ = 50,
    cursor: CursorQ = None,
    status_: Annotated[RecurringStatus | None, Query(alias="status")] = None,
    job_template_id: Annotated[str | None, Query(max_length=40)] = None,
    include_deleted: Annotated[bool, Query(description="Also list deleted ones")] = False,
) -> Page[RecurringJobOut]:
    stmt = select(RecurringJob).where(RecurringJob.client_id == client.id)
    if status_:
        stmt = stmt.where(RecurringJob.status == status_.value)
    elif not include_deleted:
        stmt = stmt.where(RecurringJob.status != "deleted")
    if job_template_id:
        stmt = stmt.where(RecurringJob.job_template_id == job_template_id)
    rows, nxt = paginate(session, stmt, RecurringJob, limit, cursor)
    names = dict(
        session.execute(
            select(JobTemplate.id, JobTemplate.name).where(
                JobTemplate.id.in_({r.job_template_id for r in rows})
            )
        ).all()
    )
    return Page[RecurringJobOut](
        items=[_out(r, names.get(r.job_template_id, "?")) for r in rows], next_cursor=nxt
    )


def _load(session, client, recurring_id: str) -> tuple[RecurringJob, JobTemplate]:
    rj = owned(session, RecurringJob, recurring_id, client, "recurring job")
    template = session.get(JobTemplate, rj.job_template_id)
    session.commit()  # no transaction stays open while Temporal is awaited
    return rj, template


@router.get(
    "/{recurring_id}",
    response_model=RecurringJobOut,
    summary="A recurring job, its next nominal times, the next firing's planned start, Temporal's view",
)
async def get_recurring(
    recurring_id: str,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    next_: Annotated[int, Query(alias="next", ge=0, le=MAX_NEXT, description="How many nominal times")] = 5,
) -> RecurringJobOut:
    rj, template = await run_in_threadpool(_load, session, client, recurring_id)
    info: ScheduleInfoOut
    try:
        desc = await svc.describe(await _temporal(services), rj)
        await run_in_threadpool(svc.reconcile_with, session, rj, desc)
        info = _info(rj, desc)
    except Exception as exc:  # noqa: BLE001 - Temporal down or slow: the stored view, marked unreachable
        log.info("could not describe schedule %s: %s", rj.schedule_id, type(exc).__name__)
        info = ScheduleInfoOut(schedule_id=rj.schedule_id, reachable=False)

    def build() -> RecurringJobOut:
        out = _out(rj, template.name, next_)
        out.schedule = info
        if out.next and rj.status != "deleted":
            out.next_preview, out.next_preview_error = _preview(session, services, client, rj, template, out)
        return out

    return await run_in_threadpool(build)


def _info(rj: RecurringJob, desc) -> ScheduleInfoOut:
    if desc is None:
        return ScheduleInfoOut(schedule_id=rj.schedule_id, reachable=True)
    i = desc.info
    return ScheduleInfoOut(
        schedule_id=rj.schedule_id,
        paused=desc.schedule.state.paused,
        note=desc.schedule.state.note,
        actions_taken=i.num_actions,
        overlap_skipped=i.num_actions_skipped_overlap,
        missed_catchup=i.num_actions_missed_catchup_window,
        recent_firings=[a.scheduled_at for a in i.recent_actions][-10:],
        recent_firing_workflows=[
            getattr(a.action, "workflow_id", "")
            for a in i.recent_actions
            if getattr(a.action, "workflow_id", "")
        ][-10:],
        running_firings=[a.workflow_id for a in i.running_actions],
    )


def _preview(session, services: Services, client, rj: RecurringJob, template: JobTemplate, out):
    """The plan the next firing would get now: same code and shape as POST /v1/schedules/preview."""
    from models.api import CandidateOut, PreviewOut
    from scheduling.scoring import Weights
    from services.planning import InfeasibleWindow, candidate_doc, preview_plan

    nominal = out.next[0].nominal_time
    try:
        earliest, latest = svc.firing_window(session, services.settings, rj, template, nominal)
        with services.plan_timer():
            plan = preview_plan(
                session,
                services.settings,
                client,
                template,
                template.fleet_template_id,
                max(earliest, datetime.now(UTC)),
                latest,
                rj.risk_mode,
                Weights(**(rj.weights or {})),
            )
    except InfeasibleWindow as exc:
        return None, f"infeasible window: {exc}"

    def c(x) -> CandidateOut:
        return CandidateOut.model_validate(candidate_doc(x))

    return (
        PreviewOut(
            candidates=[c(x) for x in plan.candidates],
            chosen=c(plan.chosen),
            rationale=plan.rationale,
            capacity=plan.capacity,
            baseline=c(plan.baseline),
            feasible_count=plan.feasible_count,
            total_count=plan.total_count,
            skill_gated=plan.skill_gated,
        ),
        None,
    )


# ---------------------------------------------------------------- update
def _not_deleted(rj: RecurringJob) -> None:
    if rj.status == "deleted":
        raise Conflict(f"recurring job {rj.id} is deleted ({rj.status_reason or 'through the API'})")


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
    changes = body.model_dump(exclude_unset=True, mode="json")

    def check():
        rj, template = _load(session, client, recurring_id)
        _not_deleted(rj)
        probe = RecurringJob(**{c.key: getattr(rj, c.key) for c in RecurringJob.__table__.columns})
        for k, v in changes.items():
            if k in ("start_at", "end_at") and v is not None:
                v = getattr(body, k)
            elif k == "risk_mode" and v is not None:
                v = body.risk_mode.value
            elif k == "weights" and v is not None:
                v = body.weights.model_dump()
            elif k in ("margin_before", "margin_after", "deadline", "interval", "catchup_window") and v:
                v = v.strip().upper()
            setattr(probe, k, v)
        if "cron" in changes and changes["cron"] is not None and "interval" not in changes:
            probe.interval = None  # switching calendars: the other one is dropped
        if "interval" in changes and changes["interval"] is not None and "cron" not in changes:
            probe.cron = None
        for k in ("margin_before", "margin_after", "catchup_window", "time_zone"):
            if getattr(probe, k) is None:
                raise Unprocessable(f"{k} cannot be null", [field_error(k, "cannot be null")])
        try:
            cal = svc.validate_row(probe)
        except CalendarError as exc:
            raise _calendar_error(exc) from exc
        probe.cron = cal.cron
        return rj, probe, template

    rj, probe, template = await run_in_threadpool(check)
    try:
        await svc.update_schedule(await _temporal(services), services.settings, probe, template)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("its Temporal Schedule no longer exists (deleted outside the API)") from exc
        raise _unavailable(exc, "update the Temporal Schedule; nothing was changed") from exc
    except ServiceUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - timeouts, connection errors
        raise _unavailable(exc, "update the Temporal Schedule; nothing was changed") from exc

    def store():
        row = session.get(RecurringJob, rj.id)
        for c in RecurringJob.__table__.columns:
            setattr(row, c.key, getattr(probe, c.key))
        row.updated_at = utcnow()
        session.commit()
        return _out(row, template.name, 5)

    return await run_in_threadpool(store)


# ---------------------------------------------------------------- pause / resume / trigger
async def _state_change(recurring_id, client, session, services, action: str, note: str | None = None):
    rj, template = await run_in_threadpool(_load, session, client, recurring_id)
    _not_deleted(rj)
    t = await _temporal(services)
    try:
        if action == "pause":
            await svc.pause(t, rj, note)
        elif action == "resume":
            await svc.resume(t, rj, template.name)
        else:
            await svc.trigger(t, rj)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            await run_in_threadpool(svc.reconcile_with, session, rj, None)
            raise Conflict(f"recurring job {rj.id}'s Temporal Schedule was deleted outside the API") from exc
        raise _unavailable(exc, f"{action} the Temporal Schedule") from exc
    except ServiceUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - timeouts, connection errors
        raise _unavailable(exc, f"{action} the Temporal Schedule") from exc
    return rj, template


@router.post(
    "/{recurring_id}/pause",
    response_model=RecurringJobOut,
    responses=_409 | _503,
    summary="Pause: no new firings",
)
async def pause_recurring(
    recurring_id: str,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    body: PauseIn | None = None,
) -> RecurringJobOut:
    note = (body.note if body else None) or "paused through the API"
    rj, template = await _state_change(recurring_id, client, session, services, "pause", note)

    def store():
        row = session.get(RecurringJob, rj.id)
        row.status, row.status_reason, row.updated_at = "paused", note, utcnow()
        session.commit()
        return _out(row, template.name)

    return await run_in_threadpool(store)


@router.post(
    "/{recurring_id}/resume", response_model=RecurringJobOut, responses=_409 | _503, summary="Resume firings"
)
async def resume_recurring(
    recurring_id: str, client: ClientDep, session: SessionDep, services: ServicesDep
) -> RecurringJobOut:
    rj, template = await _state_change(recurring_id, client, session, services, "resume")

    def store():
        row = session.get(RecurringJob, rj.id)
        row.status, row.status_reason, row.updated_at = "active", None, utcnow()
        session.commit()
        return _out(row, template.name, 5)

    return await run_in_threadpool(store)


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
    rj, _ = await _state_change(recurring_id, client, session, services, "trigger")
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
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    cancel_runs: Annotated[
        bool, Query(description="Also cancel this recurring job's unfinished runs")
    ] = False,
) -> RecurringJobOut:
    rj, template = await run_in_threadpool(_load, session, client, recurring_id)
    t = await _temporal(services)
    if rj.status != "deleted":
        try:
            await svc.delete(t, rj)
        except Exception as exc:  # noqa: BLE001 - RPC errors, timeouts, connection errors
            raise _unavailable(exc, "delete the Temporal Schedule; nothing was changed") from exc

    def mark():
        row = session.get(RecurringJob, rj.id)
        if row.status != "deleted":
            row.status, row.status_reason = "deleted", "deleted through the API"
            row.deleted_at = row.updated_at = utcnow()
        runs = []
        if cancel_runs:
            runs = list(
                session.scalars(
                    select(Run).where(
                        Run.recurring_job_id == rj.id, Run.status.not_in(sorted(TERMINAL_STATUSES))
                    )
                )
            )
        session.commit()
        return row, runs

    row, runs = await run_in_threadpool(mark)
    reason = f"recurring job {rj.id} deleted with cancel_runs=true"
    for r in runs:
        try:
            await t.get_workflow_handle(r.workflow_id).signal("cancel", CancelRequest(reason=reason))
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise _unavailable(exc, f"cancel run {r.id}") from exc

            def direct(run_id=r.id):  # no workflow: nothing else will carry the cancel out
                now = utcnow()
                session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status.not_in(sorted(TERMINAL_STATUSES)))
                    .values(status="CANCELLED", status_reason=reason, finished_at=now, updated_at=now)
                )
                session.commit()

            await run_in_threadpool(direct)
    return await run_in_threadpool(_out, row, template.name)


__all__ = ["router", "NotFound"]
