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

import asyncio
import hashlib
import json
import logging
import random
import weakref
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
from services.jobs import PlanTimer, TemporalClient, TemporalSource, check_launchable_args, new_run_for

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


def validate_row(rj: RecurringJob, now: datetime | None = None, settings: Settings | None = None) -> Calendar:
    """Validate every calendar field of a row (raises scheduling.calendar.CalendarError naming the field).
    ``settings``: where the shortest interval comes from (default: 1 minute)."""
    from scheduling.calendar import MIN_INTERVAL, CalendarError

    min_interval = (
        timedelta(seconds=settings.recurring_min_interval_sec) if settings is not None else MIN_INTERVAL
    )
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
        min_interval=min_interval,
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
    """Replace spec, action, policy and state. The paused state (and its note) is the stored one of ``rj``,
    read in the same attempt as the version the change is stored against (see ``MAX_CHANGE_ATTEMPTS``), so
    an update racing with a pause or a resume can never undo it (issue 21). A toggle made with the
    ``temporal`` CLI is read back by GET; a PATCH before that GET rewrites it from the stored state."""
    new = _schedule_for(settings, rj, template)

    def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        if rj.status == "paused":
            new.state = ScheduleState(paused=True, note=rj.status_reason or "paused through the API")
        else:
            new.state = ScheduleState(paused=False, note=summary(rj, template.name))
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
        owner = session.get(Client, rj.client_id)
        if owner is not None and owner.status != "active":
            # suspension pauses the Schedule; should that have failed, a firing still makes nothing
            return Firing(
                created=False, nominal_time=nominal, skipped=f"client {rj.client_id} is {owner.status}"
            )
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
            job_template_version=template.version,
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
        from services.job_templates import template_at

        job, run = found
        template = template_at(session, job.job_template_id, job.job_template_version)
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


# ---------------------------------------------------------------- the REST API's use cases
# Every database step runs in a worker thread (anyio.to_thread) and commits before Temporal is awaited, so
# no transaction stays open across a Temporal call. Temporal failures are ``Unavailable`` (503: nothing was
# changed); a Schedule deleted outside the API is a ``Conflict`` (409) once the row says so.
@dataclass
class RecurringView:
    """A recurring job as ``GET /v1/recurring-jobs/{id}`` shows it: the row (repaired from Temporal), its
    template, Temporal's view of the Schedule and the next firing's preview."""

    job: RecurringJob
    template: JobTemplate
    schedule: Any = None  # models.recurring.ScheduleInfoOut
    nominals: list[tuple[datetime, datetime, datetime]] | None = None  # Temporal's, when it answered
    next_preview: Any = None  # models.api.PreviewOut
    next_preview_error: str | None = None


def _calendar_error(exc: Exception) -> Exception:
    from services.errors import Unprocessable, field_error

    path = getattr(exc, "field", "calendar")
    return Unprocessable(f"{path}: {exc}", [field_error(path, str(exc))])


def _unavailable(exc: Exception, what: str) -> Exception:
    from services.errors import Unavailable

    log.warning("Temporal call failed (%s): %s", what, type(exc).__name__)
    return Unavailable(f"could not {what} (Temporal unavailable); retry later")


def _not_deleted(rj: RecurringJob) -> None:
    from services.errors import Conflict

    if rj.status == "deleted":
        raise Conflict(f"recurring job {rj.id} is deleted ({rj.status_reason or 'through the API'})")


# Every change of a recurring job (PATCH, pause, resume) is one attempt: read the row and its version
# (``updated_at``), call Temporal, then store only if the version is still the one read; if another change
# was stored meanwhile, the attempt is made again from the fresh row (its Temporal call included), so the
# last stored change is also the last one Temporal saw. Nothing is held across the Temporal call.
# Within one API process, the changes of one recurring job also queue on a lock, so they do not make each
# other retry; the version check is what holds across processes (with a short random back-off).
MAX_CHANGE_ATTEMPTS = 8
_change_locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


def _change_lock(session: Session, recurring_id: str) -> asyncio.Lock:
    """The lock of one recurring job in this app (its database engine: two apps in one process, as in the
    tests, behave as two processes)."""
    key = (id(session.get_bind()), recurring_id)
    lock = _change_locks.get(key)
    if lock is None:
        lock = _change_locks[key] = asyncio.Lock()
    return lock


async def _back_off(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not security


def _store_if_unchanged(
    session: Session, recurring_id: str, version: datetime, values: dict[str, Any]
) -> RecurringJob | None:
    """Blocking: write ``values`` if the row's ``updated_at`` is still ``version``; the row, or None."""
    from sqlalchemy import update

    res = session.execute(
        update(RecurringJob)
        .where(RecurringJob.id == recurring_id, RecurringJob.updated_at == version)
        .values(**values, updated_at=utcnow())
    )
    session.commit()
    session.expire_all()  # the sessions keep attributes on commit: the next attempt must read the row anew
    if getattr(res, "rowcount", 0) != 1:
        return None
    return session.get_one(RecurringJob, recurring_id)


def _changed_concurrently(rj: RecurringJob) -> Exception:
    from services.errors import Conflict

    return Conflict(f"recurring job {rj.id} kept changing concurrently; retry")


async def temporal_nominals(
    client: TemporalClient, rj: RecurringJob, n: int, now: datetime | None = None
) -> list[tuple[datetime, datetime, datetime]]:
    """The next ``n`` (nominal time, margin start, margin end) as Temporal's Schedule will really fire
    them: its own reading of the cron, the zone's DST gaps and repeats and the calendar
    (``ListScheduleMatchingTimes`` over the Schedule's spec), each fire time turned into its nominal time as
    the firing does. The local reading (``next_nominals``) only sizes the window asked for."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest

    if not n or rj.status == "deleted":
        return []
    now = now or datetime.now(UTC)
    cal = calendar_of(rj)
    guess = cal.nominal_times(now, n)
    if not guess:
        return []
    start = now - cal.margin_before
    end = guess[-1] - cal.margin_before + timedelta(hours=3)  # DST moves a time by at most an hour
    out: list[tuple[datetime, datetime, datetime]] = []
    for _ in range(4):  # Temporal may skip times the local reading has (a DST gap): widen, a few times
        lo, hi = Timestamp(), Timestamp()
        lo.FromDatetime(start)
        hi.FromDatetime(end)
        resp = await client.workflow_service.list_schedule_matching_times(
            ListScheduleMatchingTimesRequest(
                namespace=client.namespace, schedule_id=rj.schedule_id, start_time=lo, end_time=hi
            ),
            timeout=timedelta(seconds=10),
        )
        out = []
        for ts in resp.start_time:
            nominal = cal.nominal_for_fire(ts.ToDatetime(tzinfo=UTC))
            if nominal > now and (not out or nominal != out[-1][0]):
                out.append((nominal, *cal.margin(nominal)))
        if len(out) >= n:
            break
        end += end - start
    return out[:n]


def next_nominals(
    rj: RecurringJob, n: int, now: datetime | None = None
) -> list[tuple[datetime, datetime, datetime]]:
    """The next ``n`` (nominal time, margin start, margin end) of a recurring job that is not deleted."""
    if not n or rj.status == "deleted":
        return []
    cal = calendar_of(rj)
    return [(t, *cal.margin(t)) for t in cal.nominal_times(now or datetime.now(UTC), n)]


def load(session: Session, client: Client, recurring_id: str) -> tuple[RecurringJob, JobTemplate]:
    """The client's recurring job and its template (NotFound otherwise); ends the read transaction."""
    from services.access import owned

    rj = owned(session, RecurringJob, recurring_id, client, "recurring job")
    template = session.get(JobTemplate, rj.job_template_id)
    assert template is not None  # a template with recurring jobs cannot be deleted (foreign key)
    session.commit()  # no transaction stays open while Temporal is awaited
    return rj, template


def _new_row(
    session: Session, settings: Settings, client: Client, body: Any
) -> tuple[RecurringJob, JobTemplate]:
    """Blocking: validate ``body`` (models.recurring.RecurringJobCreate) and store the row."""
    from sqlalchemy import func

    from scheduling.calendar import CalendarError
    from services.errors import Conflict
    from services.job_templates import usable_template

    template = usable_template(session, client, body.job_template_id)
    check_launchable_args(template, body.args)
    limit = settings.max_recurring_jobs_per_client
    have = session.scalar(
        select(func.count())
        .select_from(RecurringJob)
        .where(RecurringJob.client_id == client.id, RecurringJob.status != "deleted")
    )
    if (have or 0) >= limit:
        raise Conflict(
            f"client {client.id} already has {have} recurring jobs, the limit "
            f"(ORCH_MAX_RECURRING_JOBS_PER_CLIENT) is {limit}: delete one first"
        )
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
        schedule_id=schedule_id_for(rid),
    )
    try:
        cal = validate_row(rj, settings=settings)
    except CalendarError as exc:
        raise _calendar_error(exc) from exc
    if rj.interval:
        rj.interval = rj.interval.strip().upper()
    rj.cron = cal.cron
    session.add(rj)
    session.commit()
    return rj, template


async def create_recurring(
    session: Session, settings: Settings, client: Client, body: Any, temporal: TemporalSource
) -> tuple[RecurringJob, JobTemplate]:
    """Store the recurring job, then create its Schedule; if Temporal refuses, the row goes again."""
    import anyio.to_thread

    from services.errors import Unavailable

    rj, template = await anyio.to_thread.run_sync(_new_row, session, settings, client, body)
    try:
        await create_schedule(await temporal(), settings, rj, template)
    except Exception as exc:

        def drop() -> None:
            session.delete(session.get(RecurringJob, rj.id))
            session.commit()

        await anyio.to_thread.run_sync(drop)
        if isinstance(exc, Unavailable):
            raise
        raise _unavailable(exc, "create the Temporal Schedule; nothing was created") from exc
    return rj, template


def list_recurring(
    session: Session,
    client: Client | None,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    job_template_id: str | None = None,
    include_deleted: bool = False,
    client_id: str | None = None,
) -> tuple[list[RecurringJob], dict[str, str], str | None]:
    """One page of the client's recurring jobs (newest first), their templates' names, the next cursor.
    The admin (``client`` None) sees every client's, or those of ``client_id``; a client only its own."""
    from services.pagination import paginate

    stmt = select(RecurringJob)
    if client is not None:
        stmt = stmt.where(RecurringJob.client_id == client.id)
    elif client_id is not None:
        stmt = stmt.where(RecurringJob.client_id == client_id)
    if status:
        stmt = stmt.where(RecurringJob.status == status)
    elif not include_deleted:
        stmt = stmt.where(RecurringJob.status != "deleted")
    if job_template_id:
        stmt = stmt.where(RecurringJob.job_template_id == job_template_id)
    rows, nxt = paginate(session, stmt, RecurringJob, limit, cursor)
    ids = {r.job_template_id for r in rows}
    names = dict(
        session.execute(select(JobTemplate.id, JobTemplate.name).where(JobTemplate.id.in_(ids))).all()
    )
    return rows, {str(k): str(v) for k, v in names.items()}, nxt


def schedule_info(rj: RecurringJob, desc: Any) -> Any:
    """Temporal's view of the Schedule (``describe``'s answer) as ``ScheduleInfoOut``."""
    from models.recurring import ScheduleInfoOut

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


def next_preview(
    session: Session,
    settings: Settings,
    client: Client,
    rj: RecurringJob,
    template: JobTemplate,
    nominal: datetime,
    plan_timer: PlanTimer | None = None,
) -> tuple[Any, str | None]:
    """The plan the firing for ``nominal`` would get now, in the shape of POST /v1/schedules/preview
    (``PreviewOut``), or (None, why) for an infeasible window."""
    import contextlib

    from scheduling.scoring import Weights
    from services.planning import InfeasibleWindow, preview_out, preview_plan
    from services.regions import home_region

    try:
        earliest, latest = firing_window(session, settings, rj, template, nominal)
        with plan_timer() if plan_timer else contextlib.nullcontext():
            plan = preview_plan(
                session,
                settings,
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

    out = preview_out(plan, home_region(template, client))
    return out, None


async def get_recurring(
    session: Session,
    settings: Settings,
    client: Client,
    recurring_id: str,
    temporal: TemporalSource,
    n_next: int,
    plan_timer: PlanTimer | None = None,
) -> RecurringView:
    """The recurring job repaired from its Schedule (the consistency rule), Temporal's view (marked
    unreachable when Temporal does not answer) and the next firing's preview."""
    import anyio.to_thread

    from models.recurring import ScheduleInfoOut

    rj, template = await anyio.to_thread.run_sync(load, session, client, recurring_id)
    view = RecurringView(rj, template)
    try:
        desc = await describe(await temporal(), rj)
        await anyio.to_thread.run_sync(reconcile_with, session, rj, desc)
        view.schedule = schedule_info(rj, desc)
        if desc is not None and n_next:
            view.nominals = await temporal_nominals(await temporal(), rj, n_next)
    except Exception as exc:  # noqa: BLE001 - Temporal down or slow: the stored view, marked unreachable
        log.info("could not describe schedule %s: %s", rj.schedule_id, type(exc).__name__)
        view.schedule = ScheduleInfoOut(schedule_id=rj.schedule_id, reachable=False)
    nxt = view.nominals[:1] if view.nominals is not None else next_nominals(rj, min(n_next, 1))
    if nxt:
        view.next_preview, view.next_preview_error = await anyio.to_thread.run_sync(
            next_preview, session, settings, client, rj, template, nxt[0][0], plan_timer
        )
    return view


def _patched_probe(
    session: Session,
    settings: Settings,
    client: Client,
    recurring_id: str,
    changes: dict[str, Any],
    body: Any,
) -> tuple[RecurringJob, RecurringJob, JobTemplate]:
    """Blocking: the row with ``changes`` applied on a detached copy, validated as a whole."""
    from scheduling.calendar import CalendarError
    from services.errors import Unprocessable, field_error

    rj, template = load(session, client, recurring_id)
    _not_deleted(rj)
    if "job_template_id" in changes:  # switching template: the new one must be the client's and not retired
        from services.job_templates import usable_template

        if changes["job_template_id"] is None:
            raise Unprocessable(
                "job_template_id cannot be null", [field_error("job_template_id", "cannot be null")]
            )
        template = usable_template(session, client, changes["job_template_id"])
        session.commit()
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
    if "args" in changes:
        check_launchable_args(template, probe.args)
    if "cron" in changes and changes["cron"] is not None and "interval" not in changes:
        probe.interval = None  # switching calendars: the other one is dropped
    if "interval" in changes and changes["interval"] is not None and "cron" not in changes:
        probe.cron = None
    for k in ("margin_before", "margin_after", "catchup_window", "time_zone"):
        if getattr(probe, k) is None:
            raise Unprocessable(f"{k} cannot be null", [field_error(k, "cannot be null")])
    try:
        cal = validate_row(probe, settings=settings)
    except CalendarError as exc:
        raise _calendar_error(exc) from exc
    probe.cron = cal.cron
    return rj, probe, template


async def update_recurring(
    session: Session,
    settings: Settings,
    client: Client,
    recurring_id: str,
    body: Any,
    temporal: TemporalSource,
) -> tuple[RecurringJob, JobTemplate]:
    """Apply a ``RecurringJobPatch``: validate, rewrite the Schedule, then store (nothing is stored when
    Temporal refuses)."""
    import anyio.to_thread
    from temporalio.service import RPCError, RPCStatusCode

    from services.errors import Conflict, Unavailable

    changes = body.model_dump(exclude_unset=True, mode="json")
    async with _change_lock(session, recurring_id):
        for attempt in range(MAX_CHANGE_ATTEMPTS):
            rj, probe, template = await anyio.to_thread.run_sync(
                _patched_probe, session, settings, client, recurring_id, changes, body
            )
            version = rj.updated_at
            try:
                await update_schedule(await temporal(), settings, probe, template)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    raise Conflict(
                        "its Temporal Schedule no longer exists (deleted outside the API)"
                    ) from exc
                raise _unavailable(exc, "update the Temporal Schedule; nothing was changed") from exc
            except Unavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - timeouts, connection errors
                raise _unavailable(exc, "update the Temporal Schedule; nothing was changed") from exc

            values = {
                c.key: getattr(probe, c.key)
                for c in RecurringJob.__table__.columns
                if c.key not in ("id", "updated_at", "status", "status_reason")
            }
            row = await anyio.to_thread.run_sync(_store_if_unchanged, session, rj.id, version, values)
            if row is not None:
                return row, template
            await _back_off(attempt)
    raise _changed_concurrently(rj)


async def change_state(
    session: Session,
    client: Client,
    recurring_id: str,
    action: str,
    temporal: TemporalSource,
    note: str | None = None,
) -> tuple[RecurringJob, JobTemplate]:
    """``pause`` (with ``note``), ``resume`` or ``trigger`` the Schedule, then record the new state. A
    Schedule deleted outside the API marks the row deleted and answers Conflict."""
    import anyio.to_thread
    from temporalio.service import RPCError, RPCStatusCode

    from services.errors import Conflict, Unavailable

    async with _change_lock(session, recurring_id):
        for attempt in range(MAX_CHANGE_ATTEMPTS):
            rj, template = await anyio.to_thread.run_sync(load, session, client, recurring_id)
            _not_deleted(rj)
            version = rj.updated_at
            t = await temporal()  # after the ownership check: another tenant's id is a 404 regardless
            try:
                if action == "pause":
                    await pause(t, rj, note)
                elif action == "resume":
                    await resume(t, rj, template.name)
                else:
                    await trigger(t, rj)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    await anyio.to_thread.run_sync(reconcile_with, session, rj, None)
                    raise Conflict(
                        f"recurring job {rj.id}'s Temporal Schedule was deleted outside the API"
                    ) from exc
                raise _unavailable(exc, f"{action} the Temporal Schedule") from exc
            except Unavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - timeouts, connection errors
                raise _unavailable(exc, f"{action} the Temporal Schedule") from exc
            if action == "trigger":
                return rj, template
            values = (
                {"status": "paused", "status_reason": note}
                if action == "pause"
                else {
                    "status": "active",
                    "status_reason": None,
                }
            )
            row = await anyio.to_thread.run_sync(_store_if_unchanged, session, rj.id, version, values)
            if row is not None:
                return row, template
            await _back_off(attempt)
    raise _changed_concurrently(rj)


async def delete_recurring(
    session: Session, client: Client, recurring_id: str, cancel_runs: bool, temporal: TemporalSource
) -> tuple[RecurringJob, JobTemplate]:
    """Delete the Schedule and mark the row deleted (its past runs keep their ``recurring_job_id``); with
    ``cancel_runs`` also cancel its unfinished runs (by signal; directly for a run with no workflow)."""
    import anyio.to_thread
    from sqlalchemy import update
    from temporalio.service import RPCError, RPCStatusCode

    from models.domain import TERMINAL_STATUSES
    from models.workflow import CancelRequest

    final = sorted(str(s) for s in TERMINAL_STATUSES)
    rj, template = await anyio.to_thread.run_sync(load, session, client, recurring_id)
    t = await temporal()
    if rj.status != "deleted":
        try:
            await delete(t, rj)
        except Exception as exc:  # noqa: BLE001 - RPC errors, timeouts, connection errors
            raise _unavailable(exc, "delete the Temporal Schedule; nothing was changed") from exc

    def mark() -> tuple[RecurringJob, list[Run]]:
        row = session.get_one(RecurringJob, rj.id)
        if row.status != "deleted":
            row.status, row.status_reason = "deleted", "deleted through the API"
            row.deleted_at = row.updated_at = utcnow()
        runs: list[Run] = []
        if cancel_runs:
            runs = list(
                session.scalars(select(Run).where(Run.recurring_job_id == rj.id, Run.status.not_in(final)))
            )
        session.commit()
        return row, runs

    row, runs = await anyio.to_thread.run_sync(mark)
    reason = f"recurring job {rj.id} deleted with cancel_runs=true"
    for r in runs:
        try:
            await t.get_workflow_handle(r.workflow_id).signal("cancel", CancelRequest(reason=reason))
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise _unavailable(exc, f"cancel run {r.id}") from exc

            def direct(run_id: str = r.id) -> None:  # no workflow: nothing else will carry the cancel out
                now = utcnow()
                session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status.not_in(final))
                    .values(status="CANCELLED", status_reason=reason, finished_at=now, updated_at=now)
                )
                session.commit()

            await anyio.to_thread.run_sync(direct)
    return row, template


# ---------------------------------------------------------------- the admin and suspension (issue 21)
SUSPENSION_NOTE = "paused while its client is suspended"


def acting_client(session: Session, caller: Client | None, recurring_id: str) -> Client:
    """Blocking: whose recurring job the caller acts on: a client its own (the services check ownership),
    the admin (``caller`` None) the owner of ``recurring_id`` whatever its status (NotFound if none)."""
    from services.errors import NotFound

    if caller is not None:
        return caller
    rj = session.get(RecurringJob, recurring_id)
    owner = session.get(Client, rj.client_id) if rj is not None else None
    session.commit()
    if owner is None:
        raise NotFound(f"recurring job {recurring_id} not found")
    return owner


def _to_follow(session: Session, client_id: str, suspended: bool) -> tuple[Client | None, list[str]]:
    stmt = select(RecurringJob.id).where(RecurringJob.client_id == client_id)
    if suspended:
        stmt = stmt.where(RecurringJob.status == "active")
    else:  # only those suspension paused: a pause of the client's or the admin's own stays
        stmt = stmt.where(RecurringJob.status == "paused", RecurringJob.status_reason == SUSPENSION_NOTE)
    ids = list(session.scalars(stmt.order_by(RecurringJob.id)))
    owner = session.get(Client, client_id)
    session.commit()
    return owner, ids


async def follow_client_status(session: Session, client_id: str, temporal: TemporalSource) -> list[str]:
    """After a client's status changed: suspended, pause each of its active recurring jobs (note
    ``SUSPENSION_NOTE``); active again, resume those (and only those) suspension paused. Returns the ids
    that could not be changed (Temporal unavailable, a concurrent change); their firings still make nothing
    while the client is suspended (``create_firing_run``)."""
    import anyio.to_thread

    from services.errors import ServiceError

    owner, ids = await anyio.to_thread.run_sync(_to_follow, session, client_id, True)
    if owner is None:
        return []
    suspended = owner.status != "active"
    if not suspended:
        owner, ids = await anyio.to_thread.run_sync(_to_follow, session, client_id, False)
        assert owner is not None
    failed: list[str] = []
    for rid in ids:
        try:
            if suspended:
                await change_state(session, owner, rid, "pause", temporal, SUSPENSION_NOTE)
            else:
                await change_state(session, owner, rid, "resume", temporal)
        except ServiceError as exc:
            log.warning(
                "could not %s recurring job %s after a status change of %s: %s",
                "pause" if suspended else "resume",
                rid,
                client_id,
                exc.detail,
            )
            failed.append(rid)
    return failed
