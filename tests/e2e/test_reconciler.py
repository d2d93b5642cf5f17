"""No stranded runs, suspension stops work, the admin reads and cancels any run: the product as processes
(API + worker subprocesses) on the real Temporal dev server, SeaweedFS, SQLite and the local fleet driver,
with the maintenance loop running every second.

"The API died between committing the job + run rows and starting the workflow" is simulated by writing the
rows exactly as ``create_job`` commits them, without starting anything.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.service import RPCError, RPCStatusCode

from cli.devstack import wait_for
from core.db import Database
from core.migrate import upgrade
from core.temporal import connect
from models.db import Run, utcnow
from models.workflow import MaintenanceStats, RunInput, maintenance_workflow_id, workflow_id_for
from tests.support.api import insert_job_and_run
from tests.support.e2e_stack import ADMIN, Stack, make_stack_settings, record_history, temporal_cli

pytestmark = pytest.mark.slow
GRACE_SEC = 4.0
ADMIN_H = {"X-API-Key": ADMIN}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, temporal_dev_server, s3_settings):
    tmp = tmp_path_factory.mktemp("reconciler")
    settings = make_stack_settings(
        tmp,
        temporal_dev_server.ports["grpc"],
        s3_settings,
        maintenance_interval_sec=1.0,
        reconcile_grace_sec=GRACE_SEC,
    )
    upgrade(settings)
    st = Stack(settings, tmp)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


@pytest.fixture(scope="module")
def db(stack):
    d = Database(stack.settings)
    yield d
    d.dispose()


def new_tenant(stack: Stack, name: str) -> tuple[str, dict[str, str]]:
    r = stack.http.post("/v1/clients", json={"name": name}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"X-API-Key": r.json()["api_key"]}


def strand(stack: Stack, client_id: str, template_id: str) -> str:
    """Job + run rows as create_job commits them (ONE_TIME), and no workflow: the API 'died' here."""
    return insert_job_and_run(stack.settings, client_id, template_id, status="PENDING")[1]


async def workflow_exists(stack: Stack, workflow_id: str) -> bool:
    client = await connect(stack.settings)
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def maintenance_passes(stack: Stack) -> int:
    client = await connect(stack.settings)
    handle = client.get_workflow_handle(maintenance_workflow_id(stack.settings.temporal_task_queue))
    stats = await handle.query("stats", result_type=MaintenanceStats)
    return stats.passes


async def wait_passes(stack: Stack, n: int, timeout: float = 60) -> None:
    """Wait (bounded) until the maintenance loop has completed ``n`` more passes."""
    start = await maintenance_passes(stack)
    deadline = asyncio.get_running_loop().time() + timeout
    while await maintenance_passes(stack) < start + n:
        assert asyncio.get_running_loop().time() < deadline, "the maintenance loop does not progress"
        await asyncio.sleep(0.2)


def test_stranded_pending_run_is_started_and_succeeds(stack, db):
    cid, h = new_tenant(stack, "stranded")
    tpl = stack.template(h)
    run_id = strand(stack, cid, tpl)
    run = stack.wait_status(h, run_id, {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=90)
    assert run["status"] == "SUCCEEDED", run
    assert run["exit_code"] == 0 and run["attempts"] == 1 and run["plan"]
    logs = stack.http.get(f"/v1/runs/{run_id}/logs", headers=h).json()["text"]
    assert f"ENV {run_id}" in logs and "DONE" in logs
    record_history(stack, workflow_id_for(run_id), "reconciler_started_one_time_succeeded")


async def test_cancelled_pending_run_is_never_started(stack, db):
    cid, h = new_tenant(stack, "cancel-pending")
    tpl = stack.template(h)
    run_id = strand(stack, cid, tpl)
    r = stack.http.post(f"/v1/runs/{run_id}/cancel", headers=h, json={"reason": "never mind"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "CANCELLED" and r.json()["status_reason"] == "never mind"
    with db.session() as s:  # the reconciler's grace period is over...
        created = s.get(Run, run_id).created_at
    wait_for(lambda: utcnow() > created + timedelta(seconds=GRACE_SEC), 30, "the grace period")
    await wait_passes(stack, 2)  # ...and it has looked twice since
    assert not await workflow_exists(stack, workflow_id_for(run_id))
    assert stack.run(h, run_id)["status"] == "CANCELLED"


async def test_run_whose_workflow_was_terminated_is_failed(stack):
    _, h = new_tenant(stack, "terminated")
    tpl = stack.template(h)
    job = stack.submit(h, tpl, intended_time=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    stack.wait_status(h, job["run_id"], "SCHEDULED")
    temporal_cli(stack, "workflow", "terminate", "--workflow-id", job["workflow_id"], "--reason", "ops")
    run = stack.wait_status(h, job["run_id"], {"FAILED"}, timeout=60)
    assert "TERMINATED" in run["status_reason"] and job["workflow_id"] in run["status_reason"]


async def test_pending_run_whose_workflow_closed_before_planning_is_failed(stack, db):
    """A workflow that never got to record anything (terminated while still PENDING) is noticed too."""
    cid, h = new_tenant(stack, "terminated-pending")
    tpl = stack.template(h)
    run_id = strand(stack, cid, tpl)
    client = await connect(stack.settings)
    handle = await client.start_workflow(  # on a queue no worker polls: it can never record a status
        "JobRunWorkflow",
        RunInput(
            run_id=run_id,
            client_id=cid,
            job_id="job_x",
            job_template_id=tpl,
            fleet_template_id="m5.large",
            job_type="ONE_TIME",
            risk_mode="NEUTRAL",
        ),
        id=workflow_id_for(run_id),
        task_queue="nobody-polls-this",
    )
    await handle.terminate("ops")
    run = stack.wait_status(h, run_id, {"FAILED", "SUCCEEDED", "CANCELLED"}, timeout=60)
    assert run["status"] == "FAILED" and "TERMINATED" in run["status_reason"], run


def test_suspended_clients_sleeping_run_never_launches(stack, tmp_path):
    cid, h = new_tenant(stack, "suspended")
    count_file = tmp_path / "starts"
    tpl = stack.template(h, args={"count_file": str(count_file)})
    job = stack.submit(h, tpl, intended_time=(datetime.now(UTC) + timedelta(seconds=6)).isoformat())
    stack.wait_status(h, job["run_id"], "SCHEDULED")
    r = stack.http.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    assert stack.http.get(f"/v1/runs/{job['run_id']}", headers=h).status_code == 403
    run = stack.wait_status(ADMIN_H, job["run_id"], {"CANCELLED", "SUCCEEDED", "FAILED"}, timeout=60)
    assert run["status"] == "CANCELLED" and run["status_reason"] == "client suspended", run
    assert run["attempts"] == 0 and run["fleet"] is None and not count_file.exists()
    record_history(stack, job["workflow_id"], "suspended_client_not_launched")


def test_admin_reads_and_cancels_another_clients_run(stack):
    cid, h = new_tenant(stack, "admin-cancel")
    tpl = stack.template(h)
    job = stack.submit(h, tpl, intended_time=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    stack.wait_status(h, job["run_id"], "SCHEDULED")
    listed = stack.http.get(f"/v1/runs?client_id={cid}", headers=ADMIN_H)
    assert listed.status_code == 200 and [r["run_id"] for r in listed.json()["items"]] == [job["run_id"]]
    r = stack.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=ADMIN_H, json={"reason": "ops stop"})
    assert r.status_code == 202 and r.json()["status"] == "CANCELLING", r.text
    run = stack.wait_status(ADMIN_H, job["run_id"], {"CANCELLED"})
    assert run["status_reason"] == "ops stop"
    assert stack.run(h, job["run_id"])["status"] == "CANCELLED"  # the tenant sees the same


async def test_second_worker_keeps_the_one_maintenance_loop(stack):
    client = await connect(stack.settings)
    handle = client.get_workflow_handle(maintenance_workflow_id(stack.settings.temporal_task_queue))
    before = await handle.describe()
    stack.start_worker()
    await wait_passes(stack, 2)
    after = await handle.describe()
    assert after.status == before.status and after.status.name == "RUNNING"
    # the same loop (or its own continuation), never a second one started next to it
    assert after.run_id == before.run_id or after.raw_description.workflow_execution_info.first_run_id == (
        before.raw_description.workflow_execution_info.first_run_id
    )
    record_history(stack, handle.id, "maintenance_loop")
