"""MaintenanceWorkflow on the time-skipping test server with a recording ``maintenance_pass``: a pass every
interval, task state carried from pass to pass and across continue-as-new, a failing pass never stops the
loop, ``run_now`` runs a pass at once. The real reconciler is exercised in test_reconciler.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.devstack import find_binary
from models.workflow import MaintenanceInput, MaintenancePassInput, MaintenancePassResult, MaintenanceStats
from workflows.maintenance import MaintenanceWorkflow

QUEUE = "test-maintenance"
WF_ID = "test-maintenance"


@pytest.fixture
async def env():
    e = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=find_binary("temporal-test-server")
    )
    yield e
    await e.shutdown()


async def wait_for_passes(env, n: int, step: timedelta | None, limit: int = 300) -> MaintenanceStats:
    """Until the loop has done ``n`` passes (bounded); ``step``: advance the server's clock this much
    between looks (None: let only real time pass)."""
    latest = env.client.get_workflow_handle(WF_ID)  # the current run, whichever continuation it is
    for _ in range(limit):
        stats = await latest.query(MaintenanceWorkflow.stats)
        if stats.passes >= n:
            return stats
        if step is not None:
            await env.sleep(step)
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {stats.passes} passes, expected {n}")


async def test_loop_carries_state_survives_failures_and_continues_as_new(env):
    seen: list[int] = []

    @activity.defn(name="maintenance_pass")
    async def maintenance_pass(inp: MaintenancePassInput) -> MaintenancePassResult:
        count = inp.state.get("counter", {}).get("n", 0)
        seen.append(count)
        if count == 2 and seen.count(2) <= 2:  # this pass fails on both of its attempts
            raise RuntimeError("a broken sweep")
        return MaintenancePassResult(
            state={"counter": {"n": count + 1}}, summaries={"counter": {"n": count + 1}}
        )

    async with Worker(
        env.client, task_queue=QUEUE, workflows=[MaintenanceWorkflow], activities=[maintenance_pass]
    ):
        first = await env.client.start_workflow(
            MaintenanceWorkflow.run,
            MaintenanceInput(interval_sec=60, iterations_per_run=3),
            id=WF_ID,
            task_queue=QUEUE,
        )
        stats = await wait_for_passes(env, 8, timedelta(seconds=30))
        desc = await env.client.get_workflow_handle(WF_ID).describe()
        await env.client.get_workflow_handle(WF_ID).signal(MaintenanceWorkflow.run_now)
        after_kick = await wait_for_passes(env, stats.passes + 1, None)
        await env.client.get_workflow_handle(WF_ID).terminate("test over")
    # it continued as new (3 passes per run) and the pass count runs on across runs
    assert desc.status == WorkflowExecutionStatus.RUNNING and desc.run_id != first.first_execution_run_id
    first_history = await env.client.get_workflow_handle(
        WF_ID, run_id=first.first_execution_run_id
    ).fetch_history()
    assert first_history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    # the failed pass (both attempts) left the state as it was; the next pass carried on from it
    assert seen[:6] == [0, 1, 2, 2, 2, 3] and seen == sorted(seen)
    # every pass but the failed one advanced the counter, also across continue-as-new
    assert stats.last.summaries["counter"]["n"] == stats.passes - 1
    assert after_kick.passes == stats.passes + 1
