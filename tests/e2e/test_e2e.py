"""End to end through the REST API on the real Temporal dev server + SeaweedFS + SQLite + local fleet driver,
with the API and the worker as separate processes. Also the chaos test: SIGKILL the worker mid-run and
mid-sleep; a new worker finishes both, each app started exactly once."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.devstack import wait_for
from core.migrate import upgrade
from tests.support.e2e_stack import Stack, alive, make_stack_settings, record_history, temporal_cli

pytestmark = pytest.mark.slow  # API and worker as processes (a stack of their own)


@pytest.fixture(scope="module")
def stack(open_tmp_root, temporal_dev_server, s3_settings):
    tmp = Path(tempfile.mkdtemp(prefix="e2e-", dir=open_tmp_root))  # apps run under their own uids
    settings = make_stack_settings(tmp, temporal_dev_server.ports["grpc"], s3_settings)
    upgrade(settings)
    st = Stack(settings, tmp)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


def test_success_with_args_env_and_logs(stack):
    h = stack.client()
    tpl = stack.template(h, args={"greeting": "hello", "n": 2})
    job = stack.submit(h, tpl, args={"n": 3})
    assert job["workflow_id"] == job["run_id"] and job["status"] == "PENDING"
    run = stack.wait_status(h, job["run_id"], "SUCCEEDED")
    assert run["exit_code"] == 0 and run["attempts"] == 1
    assert run["started_at"] and run["finished_at"] and run["planned_start"] and run["plan"]
    assert run["carbon"]["estimated_gco2e_chosen"] > 0 and run["carbon"]["realised_gco2e"] is not None
    logs = stack.http.get(f"/v1/runs/{job['run_id']}/logs", headers=h).json()["text"]
    assert 'ARGS {"greeting": "hello", "n": "3"}' in logs
    assert f"ENV {job['run_id']} s3://data-bucket/input" in logs and "DONE" in logs
    got = stack.http.get(f"/v1/jobs/{job['job_id']}", headers=h).json()
    assert got["run_ids"] == [job["run_id"]]
    listed = stack.http.get(f"/v1/runs?status=SUCCEEDED&job_template_id={tpl}", headers=h).json()["items"]
    assert [r["run_id"] for r in listed] == [job["run_id"]]
    is_409 = stack.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h)
    assert is_409.status_code == 409 and "SUCCEEDED" in is_409.json()["detail"]
    record_history(stack, job["workflow_id"], "one_time_succeeded")


def test_exit_code_3_is_failed(stack):
    h = stack.client()
    tpl = stack.template(h, args={"exit": 3})
    job = stack.submit(h, tpl)
    run = stack.wait_status(h, job["run_id"], {"FAILED", "SUCCEEDED"})
    assert run["status"] == "FAILED" and run["exit_code"] == 3
    assert "3" in run["status_reason"]
    record_history(stack, job["workflow_id"], "one_time_failed_exit_3")


def _running_app(stack, h, tmp_path) -> tuple[dict, int]:
    pid_file = tmp_path / f"pid-{datetime.now().timestamp()}"
    tpl = stack.template(h, args={"sleep": 600, "pid_file": str(pid_file)})
    job = stack.submit(h, tpl)
    stack.wait_status(h, job["run_id"], "RUNNING")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the app to write its pid")
    pid = int(pid_file.read_text())
    assert alive(pid)
    return job, pid


@pytest.mark.parametrize("how", ["api", "cli-signal", "cli-cancel"])
def test_cancel_running_app_kills_it(stack, app_tmp, how):
    h = stack.client()
    job, pid = _running_app(stack, h, app_tmp)
    if how == "api":
        r = stack.http.post(
            f"/v1/runs/{job['run_id']}/cancel", headers=h, json={"reason": "no longer needed"}
        )
        assert r.status_code == 202 and r.json()["status"] == "CANCELLING"
    elif how == "cli-signal":
        temporal_cli(
            stack,
            "workflow",
            "signal",
            "--workflow-id",
            job["workflow_id"],
            "--name",
            "cancel",
            "--input",
            json.dumps({"reason": "operator"}),
        )
    else:
        temporal_cli(stack, "workflow", "cancel", "--workflow-id", job["workflow_id"])
    run = stack.wait_status(h, job["run_id"], "CANCELLED", timeout=60)
    assert not alive(pid), "the app's process survived the cancel"
    assert run["finished_at"]
    if how == "api":
        assert run["status_reason"] == "no longer needed"
    # what an operator sees in the Web UI / CLI: Canceled wherever Temporal allows it (README); a bare signal
    # cannot request Temporal cancellation, so that workflow completes
    expected = "Completed" if how == "cli-signal" else "Canceled"

    def temporal_status() -> str:
        out = temporal_cli(stack, "workflow", "describe", "-w", job["workflow_id"], "--output", "json")
        return json.loads(out)["workflowExecutionInfo"]["status"]

    wait_for(lambda: temporal_status().endswith(expected.upper()), 30, f"the workflow to be {expected}")
    record_history(stack, job["workflow_id"], f"cancelled_while_running_{how}")


def test_scheduled_run_is_searchable_and_cancellable(stack):
    h = stack.client()
    tpl = stack.template(h)
    start = datetime.now(UTC) + timedelta(days=2)
    job = stack.submit(h, tpl, intended_time=start.isoformat())
    run = stack.wait_status(h, job["run_id"], "SCHEDULED")
    assert run["planned_start"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    wait_for(
        lambda: (
            job["workflow_id"]
            in temporal_cli(
                stack,
                "workflow",
                "list",
                "--query",
                f"OrchRunStatus='SCHEDULED' AND WorkflowId='{job['workflow_id']}'",
            )
        ),
        20,
        "the search attribute to be visible",
    )
    q = temporal_cli(
        stack,
        "workflow",
        "query",
        "--workflow-id",
        job["workflow_id"],
        "--name",
        "status",
        "--output",
        "json",
    )
    assert "SCHEDULED" in q
    r = stack.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h)
    assert r.status_code == 202
    run = stack.wait_status(h, job["run_id"], "CANCELLED")
    assert run["attempts"] == 0
    record_history(stack, job["workflow_id"], "cancelled_while_scheduled")


def test_reschedulable_job_runs_in_window(stack):
    h = stack.client()
    tpl = stack.template(h)
    now = datetime.now(UTC)
    job = stack.submit(
        h,
        tpl,
        type="RESCHEDULABLE",
        intended_time=None,
        earliest_start=now.isoformat(),
        latest_finish=(now + timedelta(hours=6)).isoformat(),
        risk_mode="CONSERVATIVE",
        weights={"carbon": 0.5, "risk": 0.4, "slack": 0.1},
    )
    run = stack.wait_status(h, job["run_id"], {"SCHEDULED", "RUNNING", "SUCCEEDED"})
    assert run["plan"]["rationale"] and run["plan"]["scores"].keys() == {"carbon", "risk", "slack"}
    planned = datetime.fromisoformat(run["planned_start"])
    assert now - timedelta(minutes=1) <= planned <= now + timedelta(hours=6)
    # issue 18: the plan activity kept the plan's audit record, and the run's plan names it
    audit = stack.http.get(f"/v1/runs/{job['run_id']}/plan", headers=h)
    assert audit.status_code == 200, audit.text
    rec = audit.json()
    assert rec["audit_id"] == run["plan"]["audit_id"] and rec["kind"] == "plan"
    assert datetime.fromisoformat(rec["chosen"]["start"]) == planned
    assert rec["stored"]["carbon_chosen_g"] == run["carbon"]["estimated_gco2e_chosen"]
    assert rec["regions"][0]["series"]["values"] and rec["runtime"]["p50_sec"] > 0
    stack.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h)
    stack.wait_status(h, job["run_id"], {"CANCELLED", "SUCCEEDED"})
    record_history(stack, job["workflow_id"], "reschedulable_conservative")


def test_worker_sigkill_mid_run_and_mid_sleep(stack, app_tmp):
    """Kill the worker while one app runs and another run sleeps; a new worker finishes both, no app twice."""
    h = stack.client()
    counts = [app_tmp / "count-running", app_tmp / "count-sleeping"]
    tpl_run = stack.template(h, args={"sleep": 4, "count_file": str(counts[0])})
    tpl_sleep = stack.template(h, args={"sleep": 0, "count_file": str(counts[1])})
    running = stack.submit(h, tpl_run)
    sleeping = stack.submit(
        h, tpl_sleep, intended_time=(datetime.now(UTC) + timedelta(seconds=8)).isoformat()
    )
    stack.wait_status(h, running["run_id"], "RUNNING")
    stack.wait_status(h, sleeping["run_id"], "SCHEDULED")
    wait_for(lambda: counts[0].exists(), 20, "the first app to start")
    for w in [w for w in stack.workers if w.alive()]:
        stack.kill_worker(w)
    stack.start_worker()
    for job in (running, sleeping):
        run = stack.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=90)
        assert run["status"] == "SUCCEEDED", run
    for c in counts:
        starts = c.read_text().splitlines()
        assert len(starts) == 1, f"{c.name}: the app started {len(starts)} times"
        assert not alive(int(starts[0].split()[1]))
    record_history(stack, running["workflow_id"], "worker_killed_mid_run")
    record_history(stack, sleeping["workflow_id"], "worker_killed_mid_sleep")


def test_worker_metrics_and_json_logs_with_run_ids(stack):
    """The worker exposes the Temporal SDK's Prometheus metrics; its log lines are JSON and carry run_id."""
    import httpx

    from cli.devstack import free_port, port_open

    port = free_port()
    saved = stack.env
    stack.env = saved | {"ORCH_WORKER_METRICS_PORT": str(port)}
    try:
        w = stack.start_worker()
    finally:
        stack.env = saved
    try:
        wait_for(lambda: port_open(port), 30, "the worker's metrics endpoint")
        h = stack.client()
        job = stack.submit(h, stack.template(h))
        stack.wait_status(h, job["run_id"], "SUCCEEDED")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "temporal_" in text
    finally:
        w.stop()
    lines = [
        json.loads(line)
        for w in stack.workers
        for line in w.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    about_run = [x for x in lines if job["run_id"] in x["msg"]]
    assert about_run and all(x.get("run_id") == job["run_id"] for x in about_run)
    assert not any(
        h["X-API-Key"] in line for w in stack.workers for line in w.log_path.read_text().splitlines()
    )
