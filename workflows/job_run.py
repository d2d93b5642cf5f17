"""JobRunWorkflow: plan -> durable wait -> launch -> monitor -> record, answering cancel at every step.

Deterministic orchestration only: time from ``workflow.now()``, all I/O in activities, no numpy.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.run_activities import RunActivities
    from models.domain import SA_PLANNED_START, SA_RUN_STATUS, Capacity, JobType, RunStatus
    from models.fleet import FleetHandle, FleetState, FleetStatus
    from models.workflow import (
        ERR_FLEET_LAUNCH,
        ERR_INFEASIBLE_WINDOW,
        PATCH_RETRIES_WEBHOOKS,
        TERMINAL_EVENT_TYPES,
        CancelRequest,
        FinishRequest,
        LaunchCheckRequest,
        LaunchRequest,
        MonitorRequest,
        PlanRequest,
        PlanResult,
        ResumeState,
        RunEvent,
        RunInput,
        RunState,
        RunUpdate,
        event_id_for,
    )

SA_STATUS = SearchAttributeKey.for_keyword(SA_RUN_STATUS)
SA_PLANNED = SearchAttributeKey.for_datetime(SA_PLANNED_START)

SHORT: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)
TERMINATE: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(minutes=5),
    heartbeat_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)),
)


class _Cancelled(Exception):
    """Internal: a cancel (signal or Temporal cancellation) was observed."""


@workflow.defn(name="JobRunWorkflow")
class JobRunWorkflow:
    def __init__(self) -> None:
        self._input: RunInput | None = None
        self._status = RunStatus.PENDING
        self._reason: str | None = None
        self._planned_start: datetime | None = None
        self._attempt = 0
        self._cancel_reason: str | None = None
        self._cancel_requested = False
        self._native_cancel = False
        self._fleet: FleetHandle | None = None
        self._launching: int | None = None  # attempt whose launch_fleet has not returned yet
        # issue 19 (behind PATCH_RETRIES_WEBHOOKS): webhook events, the attempt log, app retries
        self._v2 = False
        self._open_record: dict[str, Any] | None = None  # the attempt running now (attempt log)
        self._closed_record: dict[str, Any] | None = None  # the last ended attempt, not yet recorded
        self._failures = 0  # failed app attempts (retry backoff)
        self._at_risk_sent = False

    @property
    def _inp(self) -> RunInput:
        assert self._input is not None, "run() sets the input first"
        return self._input

    # ---------- messages ----------
    @workflow.signal
    def cancel(self, req: CancelRequest) -> None:
        """Best-effort cancel: ends CANCELLED at whatever step the run is in (idempotent)."""
        if not self._cancel_requested:
            self._cancel_requested = True
            self._cancel_reason = (req.reason if req else None) or "cancelled by request"
            # a cancel that arrives with the start (before the first workflow task) is handled before run()
            # has its input: only record it here; run() checks it before planning (issue 21)
            if self._input is not None:
                self._details(f"cancel requested: {self._cancel_reason}")

    @workflow.query
    def status(self) -> RunState:
        return RunState(
            run_id=self._input.run_id if self._input else "",
            status=self._status,
            status_reason=self._reason,
            planned_start=self._planned_start,
            attempt=self._attempt,
            cancel_requested=self._cancel_requested,
        )

    # ---------- main ----------
    @workflow.run
    async def run(self, inp: RunInput) -> RunState:
        self._input = inp
        # histories recorded before retries and webhooks have no marker: they replay without either
        self._v2 = workflow.patched(PATCH_RETRIES_WEBHOOKS)
        started_at: datetime | None = None
        exit_code: int | None = None
        try:
            # cancelled before the first task ran: end CANCELLED without planning. No history before this
            # fix has a cancel here (such runs failed every workflow task), so no patch marker is needed.
            self._check_cancel()
            if inp.resume is not None:  # continued-as-new while sleeping: the plan is already recorded
                plan = inp.resume.plan
                self._status, self._reason = RunStatus.SCHEDULED, plan.rationale
                self._planned_start = plan.start
            else:
                plan = await self._plan(PlanRequest(run_id=inp.run_id, not_before=workflow.now()))
                await self._set_status(
                    RunStatus.SCHEDULED,
                    plan.rationale,
                    planned_start=plan.start,
                    plan=plan.doc,
                    capacity=plan.capacity,
                    carbon_chosen_g=plan.carbon_chosen_g,
                    carbon_earliest_g=plan.carbon_earliest_g,
                    events=self._event("run.scheduled", planned_start=plan.start),
                )
            plan = await self._wait_until_start(plan, inp.resume.next_replan if inp.resume else None)
            if plan.latest_start is not None and workflow.now() > plan.latest_start:
                return await self._finish(
                    RunStatus.EXPIRED,
                    f"could not start by {_when(plan.latest_start)} and still meet the deadline",
                    started_at,
                    exit_code,
                )
            capacity = plan.capacity
            while True:
                self._check_cancel()
                if workflow.patched("launch-check"):
                    # a suspended client's run (or one already finished in the DB, e.g. cancelled while it
                    # had no workflow) never launches
                    check = await self._cancellable(
                        workflow.execute_activity_method(
                            RunActivities.check_launch, LaunchCheckRequest(run_id=inp.run_id), **SHORT
                        )
                    )
                    if not check.allowed:
                        self._cancel_requested = True
                        self._cancel_reason = check.reason or "not allowed to launch"
                        raise _Cancelled()
                self._attempt += 1
                await self._set_status(
                    RunStatus.LAUNCHING,
                    f"attempt {self._attempt}: launching the fleet",
                    attempts=self._attempt,
                    capacity=capacity,
                    attempt_record=self._take_closed_record(),
                )
                self._launching = self._attempt
                try:
                    self._fleet = await self._cancellable(
                        workflow.execute_activity_method(
                            RunActivities.launch_fleet,
                            LaunchRequest(run_id=inp.run_id, attempt=self._attempt, capacity=capacity),
                            start_to_close_timeout=timedelta(minutes=10),
                            heartbeat_timeout=timedelta(seconds=30),
                            retry_policy=RetryPolicy(
                                initial_interval=timedelta(seconds=2),
                                maximum_interval=timedelta(minutes=1),
                                maximum_attempts=10,
                            ),
                        )
                    )
                except ActivityError as exc:
                    if (
                        _error_type(exc) == ERR_FLEET_LAUNCH
                        and self._attempt < inp.max_attempts
                        and self._can_relaunch(plan)
                    ):
                        capacity = Capacity.ON_DEMAND  # no capacity this time: try again, on-demand
                        self._reason = f"attempt {self._attempt} got no capacity; retrying on-demand"
                        continue
                    raise
                self._launching = None
                attempt_start = workflow.now()
                started_at = started_at or attempt_start
                events: list[RunEvent] = []
                risk_at: datetime | None = None
                if self._v2:
                    self._open_record = {
                        "attempt": self._attempt,
                        "state": "RUNNING",
                        "started_at": attempt_start.isoformat(),
                        "capacity": str(capacity),
                    }
                    events = self._event("run.started", started_at=attempt_start)
                    risk_at = self._deadline_risk_at(plan, attempt_start)
                    if risk_at is not None and risk_at <= attempt_start:
                        events += self._at_risk_event(plan, attempt_start)
                        risk_at = None
                await self._set_status(
                    RunStatus.RUNNING,
                    f"attempt {self._attempt}: running on {self._fleet.driver}",
                    fleet=self._fleet.as_json(),
                    started_at=started_at,
                    attempt_record=self._open_record,
                    events=events,
                )
                result = await self._monitor(self._fleet, attempt_start, plan, risk_at)
                exit_code = result.exit_code
                self._close_record(str(result.state.value), exit_code, result.reason)
                if result.state == FleetState.SUCCEEDED:
                    return await self._finish(RunStatus.SUCCEEDED, "exit code 0", started_at, exit_code)
                if (
                    result.state == FleetState.INTERRUPTED
                    and self._attempt < inp.max_attempts
                    and self._can_relaunch(plan)
                ):
                    capacity = Capacity.ON_DEMAND  # a relaunch must not be interrupted again
                    self._reason = (
                        f"attempt {self._attempt} interrupted ({result.reason}); relaunching on-demand"
                    )
                    await self._terminate()
                    continue
                reason = result.reason or (
                    f"exit code {exit_code}" if exit_code is not None else result.state
                )
                if self._v2 and result.state == FleetState.FAILED and self._inp.retry is not None:
                    go, new_plan, why_not = await self._retry(plan, exit_code, reason)
                    if go:
                        if new_plan is not None:  # re-planned into a cleaner slot of the window
                            plan, capacity = new_plan, new_plan.capacity
                        continue
                    reason = why_not or reason
                return await self._finish(RunStatus.FAILED, reason, started_at, exit_code)
        except (_Cancelled, asyncio.CancelledError):
            if not self._cancel_requested:  # Temporal cancellation caught outside our helpers
                self._note_native_cancel()
            await self._finish(RunStatus.CANCELLED, self._cancel_reason, started_at, exit_code)
            if self._native_cancel:
                raise asyncio.CancelledError() from None  # Temporal shows the workflow as cancelled
            return self.status()
        except _TimedOut as exc:
            return await self._finish(RunStatus.TIMED_OUT, str(exc), started_at, exit_code)
        except ActivityError as exc:
            cause = exc.cause.message if exc.cause is not None and hasattr(exc.cause, "message") else str(exc)
            return await self._finish(
                RunStatus.FAILED, f"{exc.activity_type or 'activity'} failed: {cause}", started_at, exit_code
            )
        finally:
            if self._fleet is not None:  # never leak a process or an instance, whatever happened
                await self._terminate()

    # ---------- steps ----------
    async def _plan(self, req: PlanRequest) -> PlanResult:
        self._details("planning the start")
        return await self._cancellable(
            workflow.execute_activity_method(
                RunActivities.plan_schedule,
                req,
                start_to_close_timeout=timedelta(minutes=2),
                heartbeat_timeout=timedelta(seconds=20),  # the activity heartbeats every 5 s
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=20,
                    non_retryable_error_types=[ERR_INFEASIBLE_WINDOW],
                ),
            )
        )

    async def _wait_until_start(self, plan: PlanResult, next_replan: datetime | None = None) -> PlanResult:
        """Durable sleep until the start; re-plans RESCHEDULABLE runs every replan_interval_sec.

        The history stays bounded: once it reaches ``history_event_limit`` events (or Temporal suggests it),
        the run continues-as-new with its plan and next re-plan time, so it may sleep and re-plan for years.
        """
        inp = self._inp
        replan_every = timedelta(seconds=max(60, inp.replan_interval_sec))
        next_replan = next_replan or workflow.now() + replan_every
        while True:
            self._check_cancel()
            now = workflow.now()
            if now >= plan.start:
                return plan
            if self._history_full() and workflow.patched("continue-as-new-while-sleeping"):
                self._details(f"continuing as new while sleeping until {_when(plan.start)}")
                resume = ResumeState(
                    plan=plan,
                    next_replan=next_replan,
                    continued=(inp.resume.continued + 1) if inp.resume else 1,
                )
                workflow.continue_as_new(inp.model_copy(update={"resume": resume}))
            wake = plan.start
            if inp.job_type == JobType.RESCHEDULABLE:
                wake = min(wake, next_replan)
            self._details(f"sleeping until {_when(plan.start)}")
            await self._wait(lambda: self._cancel_requested, wake - now)
            self._check_cancel()
            now = workflow.now()
            if inp.job_type == JobType.RESCHEDULABLE and next_replan <= now < plan.start:
                next_replan = now + replan_every
                new = await self._plan(
                    PlanRequest(run_id=inp.run_id, not_before=now, current_start=plan.start)
                )
                changed = new.start != plan.start
                if not changed and new.moved and new.region != plan.region:
                    # a re-plan that keeps the start but moves the region (issue 14); older histories
                    # never took this branch
                    changed = workflow.patched("replan-region-same-start")
                if new.moved and changed:
                    plan = new
                    await self._set_status(
                        RunStatus.SCHEDULED,
                        f"re-planned: {new.rationale}",
                        planned_start=new.start,
                        plan=new.doc,
                        capacity=new.capacity,
                        carbon_chosen_g=new.carbon_chosen_g,
                        carbon_earliest_g=new.carbon_earliest_g,
                    )

    async def _monitor(
        self,
        fleet: FleetHandle,
        attempt_start: datetime,
        plan: PlanResult | None = None,
        risk_at: datetime | None = None,
    ) -> FleetStatus:
        inp = self._inp
        handle = workflow.start_activity_method(
            RunActivities.monitor_fleet,
            MonitorRequest(fleet=fleet, poll_sec=inp.monitor_poll_sec),
            start_to_close_timeout=timedelta(days=31),
            heartbeat_timeout=timedelta(seconds=max(30.0, 6 * inp.monitor_poll_sec)),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)
            ),
        )
        self._details(f"attempt {self._attempt} running on {fleet.driver}")
        hard_limit = None
        if inp.max_runtime_sec:
            hard_limit = attempt_start + timedelta(seconds=inp.max_runtime_sec)
        while True:
            # one timer for the hard limit and, once, one for the moment the run's p90 finish (given how
            # long it has run) passes latest_finish: run.deadline_at_risk (histories before it: risk_at None)
            wake = [t for t in (hard_limit, risk_at) if t is not None]
            timeout = (min(wake) - workflow.now()) if wake else None
            try:
                done = await self._wait(lambda: self._cancel_requested or handle.done(), timeout)
            except asyncio.CancelledError:
                handle.cancel()
                raise
            if done or risk_at is None or workflow.now() < risk_at:
                break
            if hard_limit is not None and workflow.now() >= hard_limit:
                break
            risk_at = None
            if plan is not None:
                await self._emit(self._at_risk_event(plan, attempt_start))
        if not done:
            handle.cancel()
            raise _TimedOut(f"ran past its hard limit of {inp.max_runtime_sec} s and was stopped")
        if not handle.done():  # cancel requested
            handle.cancel()
            raise _Cancelled()
        return await handle

    async def _wait(self, cond, timeout: timedelta | None) -> bool:
        """wait_condition with a timeout; False when it timed out."""
        try:
            await workflow.wait_condition(cond, timeout=timeout)
            return True
        except TimeoutError:
            return False

    async def _cancellable(self, awaitable):
        """Await an activity, but give up on it as soon as a cancel arrives (signal or Temporal)."""
        task = asyncio.ensure_future(awaitable)
        try:
            await workflow.wait_condition(lambda: self._cancel_requested or task.done())
        except asyncio.CancelledError:
            self._note_native_cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, ActivityError):
                pass
            raise _Cancelled()
        return task.result()

    def _note_native_cancel(self) -> None:
        self._native_cancel = True
        if not self._cancel_requested:
            self._cancel_requested = True
            self._cancel_reason = "workflow cancelled through Temporal"

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self._inp.history_event_limit
            or info.is_continue_as_new_suggested()
        )

    def _check_cancel(self) -> None:
        if self._cancel_requested:
            raise _Cancelled()

    # ---------- retries and events (issue 19) ----------
    async def _retry(
        self, plan: PlanResult, exit_code: int | None, reason: str
    ) -> tuple[bool, PlanResult | None, str | None]:
        """After a failed attempt: (retry?, a re-planned start or None, why not). Waits the backoff (and the
        re-planned start) here, cancel-aware; never starts an attempt that cannot finish (p50) in time."""
        inp = self._inp
        policy = inp.retry
        assert policy is not None
        self._failures += 1
        failed = self._attempt
        if not policy.retryable(exit_code):
            return False, None, f"{reason} (attempt {failed}; exit code {exit_code} is not retryable)"
        if failed >= policy.max_attempts:
            return False, None, f"{reason} (attempt {failed} of {policy.max_attempts}; no retries left)"
        resume_at = workflow.now() + timedelta(seconds=policy.delay_sec(self._failures))
        if not self._fits(plan, resume_at):
            return False, None, self._too_late(reason, failed, plan, resume_at)
        await self._terminate()  # the failed attempt's fleet goes before the backoff
        why = f"attempt {failed} failed ({reason}); attempt {failed + 1} at {_when(resume_at)}"
        await self._set_status(
            RunStatus.SCHEDULED,
            f"retrying: {why}",
            planned_start=resume_at,
            attempt_record=self._take_closed_record(),
            events=self._event(
                "run.retrying",
                attempt=failed,
                failed_attempt=failed,
                next_attempt=failed + 1,
                exit_code=exit_code,
                retry_at=resume_at,
                reason=reason,
            ),
        )
        self._details(f"backing off until {_when(resume_at)}")
        await self._wait(lambda: self._cancel_requested, resume_at - workflow.now())
        self._check_cancel()
        if not (policy.replan and inp.job_type == JobType.RESCHEDULABLE):
            return True, None, None
        try:
            new = await self._plan(
                PlanRequest(run_id=inp.run_id, not_before=workflow.now(), retry_attempt=failed + 1)
            )
        except ActivityError:  # e.g. no start left that the planner likes: retry now, as without re-plan
            return True, None, None
        if new.start > workflow.now():
            if not self._fits(new, new.start):
                return True, None, None  # the cleaner slot is too late: go now
            await self._set_status(
                RunStatus.SCHEDULED,
                f"retrying: attempt {failed + 1} moved to a cleaner start: {new.rationale}",
                planned_start=new.start,
            )
            await self._wait(lambda: self._cancel_requested, new.start - workflow.now())
            self._check_cancel()
        return True, new, None

    def _fits(self, plan: PlanResult, start: datetime) -> bool:
        """Can an attempt started at ``start`` finish (p50) before latest_finish?"""
        latest = self._inp.latest_finish
        return latest is None or start + timedelta(seconds=plan.p50_sec) <= latest

    def _too_late(self, reason: str, failed: int, plan: PlanResult, at: datetime) -> str:
        latest = self._inp.latest_finish
        assert latest is not None
        return (
            f"{reason} (attempt {failed}); not retried: attempt {failed + 1} could not start before "
            f"{_when(at)} (backoff) and finish (p50 {plan.p50_sec:.0f} s) by latest_finish {_when(latest)}"
        )

    def _event(self, event_type: str, attempt: int | None = None, **data: Any) -> list[RunEvent]:
        """The run's event of this type (stable id per run, type and attempt); none for older histories."""
        if not self._v2:
            return []
        n = self._attempt if attempt is None else attempt
        if event_type in ("run.scheduled", "run.deadline_at_risk") or event_type in TERMINAL_EVENTS.values():
            n = 0  # once per run
        payload = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
        return [
            RunEvent(
                event_id=event_id_for(self._inp.run_id, event_type, n),
                type=event_type,
                attempt=self._attempt,
                data=payload,
            )
        ]

    def _at_risk_event(self, plan: PlanResult, attempt_start: datetime) -> list[RunEvent]:
        if self._at_risk_sent:
            return []
        self._at_risk_sent = True
        elapsed = (workflow.now() - attempt_start).total_seconds()
        p90_finish = attempt_start + timedelta(seconds=_conditional_p90(plan.p50_sec, plan.p90_sec, elapsed))
        return self._event(
            "run.deadline_at_risk",
            latest_finish=self._inp.latest_finish,
            p90_finish=p90_finish,
            p50_sec=plan.p50_sec,
            p90_sec=plan.p90_sec,
            running_for_sec=elapsed,
        )

    def _deadline_risk_at(self, plan: PlanResult, attempt_start: datetime) -> datetime | None:
        latest = self._inp.latest_finish
        if latest is None or self._at_risk_sent:
            return None
        at = _risk_elapsed(plan.p50_sec, plan.p90_sec, (latest - attempt_start).total_seconds())
        return None if at is None else attempt_start + timedelta(seconds=at)

    async def _emit(self, events: list[RunEvent]) -> None:
        if events:
            await self._shielded(
                workflow.execute_activity_method(
                    RunActivities.update_run, RunUpdate(run_id=self._inp.run_id, events=events), **SHORT
                )
            )

    def _close_record(self, state: str, exit_code: int | None, reason: str | None) -> None:
        if self._open_record is None:
            return
        self._closed_record = self._open_record | {
            "state": state,
            "exit_code": exit_code,
            "finished_at": workflow.now().isoformat(),
            "reason": reason,
        }
        self._open_record = None

    def _take_closed_record(self) -> dict[str, Any] | None:
        record, self._closed_record = self._closed_record, None
        return record

    def _can_relaunch(self, plan: PlanResult) -> bool:
        latest = self._inp.latest_finish
        return latest is None or workflow.now() + timedelta(seconds=plan.p90_sec) <= latest

    async def _terminate(self) -> None:
        """Stop the current fleet (idempotent); shielded so a Temporal cancellation cannot skip it."""
        fleet = self._fleet
        if fleet is None:
            return
        self._details(f"terminating attempt {fleet.attempt}")
        await self._shielded(
            workflow.execute_activity_method(RunActivities.terminate_fleet, fleet, **TERMINATE)
        )
        self._fleet = None

    async def _finish(
        self, status: RunStatus, reason: str | None, started_at: datetime | None, exit_code: int | None
    ) -> RunState:
        """Stop the fleet, then record the final status (so CANCELLED means the app is gone)."""
        if (
            self._fleet is None
            and self._launching is not None
            and workflow.patched("terminate-attempt-interrupted-in-launch")
        ):
            # stopped while launch_fleet ran: the attempt may exist without us holding its handle; drivers
            # find it by run id + attempt (and make sure a late launch never starts it)
            self._fleet = FleetHandle(driver="unknown", run_id=self._inp.run_id, attempt=self._launching)
        if status == RunStatus.CANCELLED and self._fleet is not None:
            await self._set_status(RunStatus.CANCELLING, reason)
        await self._terminate()
        self._close_record(str(status), exit_code, reason)  # an attempt cut short (cancel, hard limit)
        self._status, self._reason = status, reason
        await self._shielded(
            workflow.execute_activity_method(
                RunActivities.finish_run,
                FinishRequest(
                    run_id=self._inp.run_id,
                    status=status,
                    status_reason=reason,
                    exit_code=exit_code,
                    attempts=self._attempt,
                    started_at=started_at,
                    finished_at=workflow.now(),
                    attempt_record=self._take_closed_record(),
                    events=self._event(
                        TERMINAL_EVENTS[status], status=str(status), reason=reason, exit_code=exit_code
                    ),
                ),
                **SHORT,
            )
        )
        self._upsert_status(status)
        self._details(f"{status}: {reason}")
        return self.status()

    async def _set_status(self, status: RunStatus, reason: str | None = None, **fields: Any) -> None:
        self._status, self._reason = status, reason
        if "planned_start" in fields:
            self._planned_start = fields["planned_start"]
        await self._shielded(
            workflow.execute_activity_method(
                RunActivities.update_run,
                RunUpdate(run_id=self._inp.run_id, status=status, status_reason=reason, **fields),
                **SHORT,
            )
        )
        self._upsert_status(status)
        self._details(f"{status}: {reason or ''}")

    async def _shielded(self, awaitable):
        """Bookkeeping activities finish even while the workflow is being cancelled."""
        task = asyncio.ensure_future(awaitable)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done():
                    raise
                self._note_native_cancel()  # remember it; the caller's next step turns it into CANCELLED

    def _upsert_status(self, status: RunStatus) -> None:
        if not self._inp.search_attributes:
            return
        updates: list[SearchAttributeUpdate[Any]] = [SA_STATUS.value_set(status)]
        if self._planned_start is not None:
            updates.append(SA_PLANNED.value_set(self._planned_start))
        workflow.upsert_search_attributes(updates)

    def _details(self, text: str) -> None:
        workflow.set_current_details(f"run {self._inp.run_id}: {text}")


def _when(t: datetime) -> str:
    """A time for people (Web UI details, status reasons): UTC, to the second."""
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


class _TimedOut(Exception):
    pass


TERMINAL_EVENTS = TERMINAL_EVENT_TYPES
_Z90 = NormalDist().inv_cdf(0.9)
_N = NormalDist()


_MAX_LOG_SEC = math.log(1e10)  # ~317 years: every figure stays a finite timedelta


def _conditional_p90(p50: float, p90: float, elapsed: float) -> float:
    """p90 of the runtime (s) of a run still running after ``elapsed`` s: lognormal through p50 and p90
    (the planner's model), conditioned on T > elapsed. Pure math (deterministic in a workflow). Always finite:
    a run far past its model (p50 0.5 s from a history of quick runs, 20 s elapsed) must not fail the task."""
    p50 = max(p50, 1e-3)
    sigma = math.log(max(p90, p50) / p50) / _Z90
    if sigma <= 1e-9:
        return max(p90, elapsed)
    mu = math.log(p50)
    survive = 1.0 if elapsed <= 0 else _N.cdf(-(math.log(elapsed) - mu) / sigma)
    tail = 0.1 * survive
    if tail < 1e-12:  # far past anything the model expects (it no longer tells): scale what has been seen
        return elapsed * max(p90, p50) / p50
    return max(math.exp(min(mu - sigma * _N.inv_cdf(tail), _MAX_LOG_SEC)), elapsed)


def _risk_elapsed(p50: float, p90: float, budget: float) -> float | None:
    """How long (s) after its start a run still running has its p90 finish past the deadline ``budget`` s
    after the start: 0 if it is at risk from the start, None if never before the deadline."""
    if budget <= 0 or _conditional_p90(p50, p90, 0.0) > budget:
        return 0.0
    lo, hi = 0.0, budget  # conditional p90 grows with elapsed time and exceeds it: a crossing before budget
    if _conditional_p90(p50, p90, hi) <= budget:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        if _conditional_p90(p50, p90, mid) > budget:
            hi = mid
        else:
            lo = mid
    return hi


def _error_type(exc: ActivityError) -> str | None:
    return getattr(exc.cause, "type", None)
