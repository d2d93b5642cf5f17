"""Recurring jobs (issue 13): one Temporal Schedule per recurring job, one job + run per firing.

- The Schedule ``recurring-<id>`` fires at the start of each firing's carbon margin (scheduling/calendar.py
  shifts the calendar by ``margin_before``) and starts ``RecurringFiringWorkflow`` (workflows/recurring.py)
  with workflow id ``recurring-<id>`` (Temporal appends the fire time).
- That workflow's activity (``create_firing_run`` here) creates the job and run rows idempotently by
  (recurring_job_id, nominal time) - a unique index - so a retried activity or a killed worker can never
  make two runs for one firing; the run's window is the firing's margin, and its ``JobRunWorkflow``
  (id ``Run.workflow_id``) is started as a child the firing waits for, so Temporal's overlap policy sees a
  run in flight.
- Downtime: a firing handled late (no worker, or Temporal itself catching up) makes its run when it is
  handled before its margin ends (the run starts inside the margin) or within ``catchup_window`` of its fire
  time (a catch-up: the run must start within ``CATCHUP_START_GRACE`` of being handled); later than both, it
  is recorded as an ``EXPIRED`` run (never started) whose reason names the margin's end and the window.
  Temporal applies the same window to firings it missed while down, so one rule covers both.
- Consistency rule between REST and Temporal: **Temporal's Schedule is the source of truth for paused /
  deleted**. ``GET /v1/recurring-jobs/{id}`` describes the Schedule and repairs the row: paused or unpaused
  with ``temporal schedule toggle`` shows as such; a Schedule deleted with ``temporal schedule delete`` marks
  the recurring job ``deleted`` (reason says so). A firing of a recurring job whose row is deleted creates
  nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from core.settings import Settings
from models.db import Client, Job, JobTemplate, RecurringJob, Run, new_id, utcnow
from models.domain import SA_CLIENT_ID, SA_JOB_TEMPLATE_ID
from models.recurring_workflow import FiringArgs
from models.workflow import RunInput
from scheduling.calendar import Calendar, build_calendar, parse_duration
from services.jobs import TemporalClient, new_run_for

log = logging.getLogger("orch.recurring")

FIRING_WORKFLOW = "RecurringFiringWorkflow"
MIN_CATCHUP = timedelta(seconds=10)  # Temporal's floor for a catch-up window
CATCHUP_START_GRACE = timedelta(minutes=1)  # a caught-up firing's run must start within this long
OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


def _when(t: datetime | None) -> str:
    """A time for people (Web UI): UTC, to the second."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t is not None else "-"


def schedule_id_for(recurring_id: str) -> str:
    return f"recurring-{recurring_id}"


# ---------------------------------------------------------------- calendar of a row
def calendar_of(rj: RecurringJob) -> Calendar:
    """The stored (already validated) calendar of a row."""
    return Calendar(
        time_zone=rj.time_zone,
        cron=rj.cron,
        interval=parse_duration(rj.interval) if rj.interval else None,
        margin_before=parse_duration(rj.margin_before),
        margin_after=parse_duration(rj.margin_after),
        start_at=rj.start_at,
        end_at=rj.end_at,
    )


def validate_row(rj: RecurringJob, now: datetime | None = None) -> Calendar:
    """Validate every calendar field of a row (raises scheduling.calendar.CalendarError naming the field)."""
    from scheduling.calendar import CalendarError

    cal = build_calendar(
        cron=rj.cron,
        interval=rj.interval,
        time_zone=rj.time_zone,
        margin_before=rj.margin_before,
        margin_after=rj.margin_after,
        deadline=rj.deadline,
        start_at=rj.start_at,
        end_at=rj.end_at,
        now=now,
    )
    if parse_duration(rj.catchup_window, "catchup_window") < MIN_CATCHUP:
        raise CalendarError("catchup_window", "catchup_window must be at least PT10S (Temporal's minimum)")
    return cal


def summary(rj: RecurringJob, template_name: str) -> str:
    """One line a person reads in the Web UI's Schedules page and in ``temporal schedule list``."""
    when = f"cron '{rj.cron}' {rj.time_zone}" if rj.cron else f"every {rj.interval}"
    window = f"margin -{rj.margin_before}/+{rj.margin_after}"
    if rj.deadline:
        window += f", deadline +{rj.deadline}"
    return f"{template_name}: {when}, {window}, {rj.risk_mode}, overlap {rj.overlap}"


# ---------------------------------------------------------------- the Temporal Schedule
def _schedule_for(settings: Settings, rj: RecurringJob, template: JobTemplate) -> Schedule:
    cal = calendar_of(rj)
    start, end = cal.fire_window()
    if cal.interval is not None:
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=cal.interval, offset=cal.fire_interval_offset())],
            start_at=start,
            end_at=end,
        )
    else:
        spec = ScheduleSpec(
            cron_expressions=cal.fire_cron_expressions(),
            time_zone_name=rj.time_zone,
            start_at=start,
            end_at=end,
        )
    text = summary(rj, template.name)

    return Schedule(
        action=ScheduleActionStartWorkflow(
            FIRING_WORKFLOW,
            FiringArgs(recurring_job_id=rj.id),
            id=schedule_id_for(rj.id),
            task_queue=settings.temporal_task_queue,
            typed_search_attributes=_search_attributes(rj),
            static_summary=f"recurring {text}",
            static_details=f"client {rj.client_id}, recurring job {rj.id}, template {template.id}",
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=OVERLAP[rj.overlap], catchup_window=parse_duration(rj.catchup_window)),
        state=ScheduleState(paused=rj.status == "paused", note=text),
    )


def _search_attributes(rj: RecurringJob) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SearchAttributeKey.for_keyword(SA_CLIENT_ID), rj.client_id),
            SearchAttributePair(SearchAttributeKey.for_keyword(SA_JOB_TEMPLATE_ID), rj.job_template_id),
        ]
    )


def memo_for(rj: RecurringJob, template: JobTemplate) -> dict:
    return {
        "recurring_job_id": rj.id,
        "client_id": rj.client_id,
        "template": template.name,
        "summary": summary(rj, template.name),
    }


async def create_schedule(
    client: TemporalClient, settings: Settings, rj: RecurringJob, template: JobTemplate
):
    await client.create_schedule(
        rj.schedule_id,
        _schedule_for(settings, rj, template),
        memo=memo_for(rj, template),
        search_attributes=_search_attributes(rj),
        rpc_timeout=timedelta(seconds=10),
    )


async def update_schedule(
    client: TemporalClient, settings: Settings, rj: RecurringJob, template: JobTemplate
):
    """Replace spec, action and policy; keep Temporal's paused state and note (the source of truth)."""
    new = _schedule_for(settings, rj, template)

    def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        state = inp.description.schedule.state
        note = state.note if state.paused else summary(rj, template.name)
        new.state = ScheduleState(paused=state.paused, note=note)
        return ScheduleUpdate(schedule=new)

    await client.get_schedule_handle(rj.schedule_id).update(updater, rpc_timeout=timedelta(seconds=10))


async def pause(client: TemporalClient, rj: RecurringJob, note: str | None) -> None:
    await client.get_schedule_handle(rj.schedule_id).pause(note=note or "paused through the API")


async def resume(client: TemporalClient, rj: RecurringJob, template_name: str) -> None:
    await client.get_schedule_handle(rj.schedule_id).unpause(note=summary(rj, template_name))


async def trigger(client: TemporalClient, rj: RecurringJob) -> None:
    """One firing now. ALLOW_ALL: an explicit trigger always makes its run, even with a run in flight."""
    await client.get_schedule_handle(rj.schedule_id).trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)


async def delete(client: TemporalClient, rj: RecurringJob) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await client.get_schedule_handle(rj.schedule_id).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise


async def describe(client: TemporalClient, rj: RecurringJob) -> Any:
    """The Schedule's description (``temporalio.client.ScheduleDescription``), or None if Temporal has none
    (deleted outside the API)."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return await client.get_schedule_handle(rj.schedule_id).describe(rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def reconcile_with(session: Session, rj: RecurringJob, desc: Any) -> RecurringJob:
    """Apply the consistency rule (module doc) given :func:`describe`'s answer: Temporal's paused/deleted
    state wins. Commits a change."""
    if rj.status == "deleted":
        return rj
    if desc is None:
        rj.status = "deleted"
        rj.status_reason = "its Temporal Schedule was deleted outside the API (temporal schedule delete)"
        rj.deleted_at = rj.updated_at = utcnow()
    else:
        paused = desc.schedule.state.paused
        want = "paused" if paused else "active"
        if rj.status != want:
            rj.status = want
            rj.status_reason = (desc.schedule.state.note or None) if paused else None
            rj.updated_at = utcnow()
    if session.is_modified(rj):
        session.commit()
    return rj


# ---------------------------------------------------------------- a firing
@dataclass
class Firing:
    """What the firing activity made (or found): the run and the input of its JobRunWorkflow."""

    created: bool
    nominal_time: datetime | None
    run_id: str | None = None
    run_input: RunInput | None = None
    workflow_id: str | None = None
    summary: str | None = None
    details: str | None = None
    skipped: str | None = None
    client_id: str = ""  # for the run workflow's search attributes
    job_template_id: str = ""


def _runtime_need(session: Session, settings: Settings, template: JobTemplate, risk_mode: str) -> float:
    from services.planning import _runtime  # the planner's own runtime estimate (p50/p90) for this template

    p50, p90, _ = _runtime(session, settings, template, template.fleet_template_id)
    return p90 if risk_mode == "CONSERVATIVE" else p50


def firing_window(
    session: Session, settings: Settings, rj: RecurringJob, template: JobTemplate, nominal: datetime
) -> tuple[datetime, datetime]:
    """(earliest_start, latest_finish) of a firing: the run starts in [N - before, N + after]. The planner's
    latest start is latest_finish - runtime (p90 CONSERVATIVE, p50 otherwise), so latest_finish = N + after
    + that runtime puts the latest start exactly at the margin's end. With a deadline: N + deadline."""
    cal = calendar_of(rj)
    earliest, margin_end = cal.margin(nominal)
    if rj.deadline:
        return earliest, nominal + parse_duration(rj.deadline)
    need = _runtime_need(session, settings, template, rj.risk_mode)
    return earliest, margin_end + timedelta(seconds=need)


def create_firing_run(
    session: Session, settings: Settings, recurring_id: str, fire_time: datetime, now: datetime | None = None
) -> Firing:
    """Idempotent by (recurring job, nominal time): the second call for one firing returns the same run."""
    from services.jobs import run_input_for

    now = now or datetime.now(UTC)
    rj = session.get(RecurringJob, recurring_id)
    if rj is None:
        return Firing(
            created=False, nominal_time=None, skipped=f"recurring job {recurring_id} does not exist"
        )
    cal = calendar_of(rj)
    nominal = cal.nominal_for_fire(fire_time)
    found = _firing_run(session, rj.id, nominal)
    if found is None:
        if rj.status == "deleted":
            return Firing(created=False, nominal_time=nominal, skipped=f"recurring job {rj.id} is deleted")
        template = session.get(JobTemplate, rj.job_template_id)
        assert template is not None  # a template with recurring jobs cannot be deleted (foreign key)
        earliest, latest_finish = firing_window(session, settings, rj, template, nominal)
        margin_end = cal.margin(nominal)[1]
        catchup_end = fire_time.astimezone(UTC) + parse_duration(rj.catchup_window)
        late = now > margin_end and now > catchup_end
        if now > margin_end and not late:
            # a catch-up: handled after its margin (worker or Temporal down) but within the catch-up window
            # after its fire time: the run starts at once (within CATCHUP_START_GRACE)
            earliest = now
            need = latest_finish - margin_end if not rj.deadline else timedelta(0)
            latest_finish = max(now + CATCHUP_START_GRACE + need, latest_finish)
        body = {"recurring_job_id": rj.id, "nominal_time": nominal.isoformat()}
        job = Job(
            id=new_id("job"),
            client_id=rj.client_id,
            job_template_id=template.id,
            type="RESCHEDULABLE",
            earliest_start=earliest,
            latest_finish=latest_finish,
            risk_mode=rj.risk_mode,
            weights=dict(rj.weights or {}),
            args=dict(rj.args or {}),
            idempotency_key=f"recurring:{rj.id}:{nominal.isoformat()}",
            request_hash=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
            recurring_job_id=rj.id,
            nominal_time=nominal,
        )
        run = new_run_for(
            job,
            template,
            status="EXPIRED" if late else "PENDING",
            status_reason=(
                f"the firing for {_when(nominal)} (fired {_when(fire_time)}) was processed at {_when(now)}, "
                f"after its margin ended at {_when(margin_end)} and beyond its catch-up window "
                f"{rj.catchup_window} (until {_when(catchup_end)}) (worker or Temporal down): not started"
                if late
                else None
            ),
            finished_at=now if late else None,
            recurring_job_id=rj.id,
        )
        try:
            session.add(job)
            session.flush()
            session.add(run)
            session.commit()
            created = True
        except IntegrityError:
            session.rollback()  # a concurrent attempt of the same firing won: use its rows
            found = _firing_run(session, rj.id, nominal)
            if found is None:
                raise
            created = False
    else:
        created = False
    if found is not None:
        job, run = found
        template = session.get(JobTemplate, job.job_template_id)
    if run.status != "PENDING" or template is None:
        session.commit()
        return Firing(
            created=created, nominal_time=nominal, run_id=run.id, skipped=f"run {run.id} is {run.status}"
        )
    inp = run_input_for(settings, run, job, template)
    text = (
        f"{template.name} (recurring {rj.id}, nominal {_when(nominal)}, {job.risk_mode}) "
        f"on {run.fleet_template_id}"
    )
    margin_end = cal.margin(nominal)[1]
    caught_up = job.earliest_start is not None and job.earliest_start > margin_end
    start_by = job.earliest_start + CATCHUP_START_GRACE if caught_up and job.earliest_start else margin_end
    details = (
        f"client {run.client_id}, job {job.id}, run {run.id}, start in "
        f"[{_when(job.earliest_start)}, {_when(start_by)}]"
        + (f" (caught up: its margin ended at {_when(margin_end)})" if caught_up else "")
    )
    session.commit()
    return Firing(
        created=created,
        nominal_time=nominal,
        run_id=run.id,
        client_id=run.client_id,
        job_template_id=run.job_template_id,
        run_input=inp,
        workflow_id=run.workflow_id,
        summary=text,
        details=details,
    )


def _firing_run(session: Session, recurring_id: str, nominal: datetime) -> tuple[Job, Run] | None:
    job = session.scalar(select(Job).where(Job.recurring_job_id == recurring_id, Job.nominal_time == nominal))
    if job is None:
        return None
    run = session.scalar(select(Run).where(Run.job_id == job.id).order_by(Run.created_at))
    return (job, run) if run is not None else None


def owned_template(session: Session, client: Client, template_id: str) -> JobTemplate | None:
    t = session.get(JobTemplate, template_id)
    return t if t is not None and t.client_id == client.id else None
