"""`orch jobs|runs|preview` against a real stack (API + worker processes, Temporal dev server, SeaweedFS,
SQLite, local fleet): every command, `--json`, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from core.migrate import upgrade
from tests.support.e2e_stack import Stack, make_stack_settings, orch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory, temporal_dev_server, s3_settings):
    tmp = tmp_path_factory.mktemp("cli")
    settings = make_stack_settings(tmp, temporal_dev_server.ports["grpc"], s3_settings)
    upgrade(settings)
    st = Stack(settings, tmp)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


@pytest.fixture(scope="module")
def tenant(stack):
    headers = stack.client("cli")
    return headers["X-API-Key"], stack.template(headers)


def test_submit_watch_logs_get_list_succeeded(stack, tenant):
    key, tpl = tenant
    r = orch(stack, key, "jobs", "submit", "-t", tpl, "--at", "now", "--arg", "sleep=0.5", "--json")
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]

    w = orch(stack, key, "runs", "watch", run_id, "--interval", "0.3", "--timeout", "90s")
    assert w.returncode == 0, w.stdout + w.stderr
    assert "SUCCEEDED" in w.stdout
    # piped: one line per state, each with a UTC timestamp, no ANSI codes or carriage returns
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ", line) for line in w.stdout.splitlines())
    assert "\x1b" not in w.stdout and "\r" not in w.stdout

    logs = orch(stack, key, "runs", "logs", run_id, "--follow", "--interval", "0.3")
    assert logs.returncode == 0 and "DONE" in logs.stdout, logs.stdout + logs.stderr

    got = orch(stack, key, "runs", "get", run_id, "--json")
    assert json.loads(got.stdout)["status"] == "SUCCEEDED"
    table = orch(stack, key, "runs", "get", run_id)
    assert "SUCCEEDED" in table.stdout and run_id in table.stdout
    # times are shown to the second, never with microseconds
    assert not any(ch == "." for line in table.stdout.splitlines() if "started" in line for ch in line)

    lst = orch(stack, key, "runs", "list", "--status", "SUCCEEDED", "--json")
    assert run_id in [i["run_id"] for i in json.loads(lst.stdout)["items"]]
    assert run_id in orch(stack, key, "runs", "list").stdout


def test_watch_exits_nonzero_when_the_run_fails(stack, tenant):
    key, tpl = tenant
    r = orch(stack, key, "jobs", "submit", "-t", tpl, "--at", "now", "--arg", "exit=3", "--watch")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout


def test_cancel_and_json_file_submission(stack, tenant, tmp_path):
    key, tpl = tenant
    now = datetime.now(UTC)
    req = tmp_path / "job.json"
    req.write_text(
        json.dumps(
            {
                "job_template_id": tpl,
                "type": "RESCHEDULABLE",
                "earliest_start": (now + timedelta(hours=2)).isoformat(),
                "latest_finish": (now + timedelta(hours=10)).isoformat(),
                "risk_mode": "CONSERVATIVE",
            }
        )
    )
    r = orch(stack, key, "jobs", "submit", "-f", str(req), "--json", "--idempotency-key", "cli-file-1")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    again = orch(stack, key, "jobs", "submit", "-f", str(req), "--json", "--idempotency-key", "cli-file-1")
    assert json.loads(again.stdout)["job_id"] == created["job_id"]

    job = orch(stack, key, "jobs", "get", created["job_id"], "--json")
    assert json.loads(job.stdout)["run_ids"] == [created["run_id"]]
    assert created["job_id"] in orch(stack, key, "jobs", "list").stdout

    c = orch(stack, key, "runs", "cancel", created["run_id"], "--reason", "changed my mind")
    assert c.returncode == 0, c.stderr
    w = orch(stack, key, "runs", "watch", created["run_id"], "--interval", "0.3", "--timeout", "60", "--json")
    assert w.returncode == 1
    assert json.loads(w.stdout)["status"] == "CANCELLED"
    # cancelling a finished run is refused by the API: exit 3 with the problem's detail
    again = orch(stack, key, "runs", "cancel", created["run_id"])
    assert again.returncode == 3 and "already finished" in again.stderr


def test_preview_table_json_and_chart(stack, tenant, tmp_path):
    key, tpl = tenant
    r = orch(stack, key, "preview", "-t", tpl, "--within", "12h", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["chosen"]["proposed_start"]
    table = orch(stack, key, "preview", "-t", tpl, "--within", "12h", "--chart", str(tmp_path / "p.svg"))
    assert table.returncode == 0, table.stderr
    assert "chosen:" in table.stdout
    assert (tmp_path / "p.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_errors_map_to_exit_codes(stack, tenant):
    key, _ = tenant
    assert orch(stack, None, "runs", "list").returncode == 2  # no key
    assert orch(stack, "wrong-key", "runs", "list").returncode == 3  # 401
    missing = orch(stack, key, "runs", "get", "run_doesnotexist")
    assert missing.returncode == 3 and "not found" in missing.stderr
    bad_time = orch(stack, key, "jobs", "submit", "-t", "x", "--at", "2026-01-01T00:00:00")
    assert bad_time.returncode == 2 and "offset" in bad_time.stderr
    env_url = stack.base
    stack.base = "http://127.0.0.1:1"  # nothing listens there
    try:
        assert orch(stack, key, "runs", "list").returncode == 4
    finally:
        stack.base = env_url


def test_help_shows_no_metavar_for_flags():
    r = subprocess.run(
        [sys.executable, "-m", "cli", "runs", "watch", "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "120"},
    )
    assert r.returncode == 0
    json_line = next(line for line in r.stdout.splitlines() if "--json" in line)
    assert "<bool>" not in json_line
    assert "DURATION" in next(line for line in r.stdout.splitlines() if "--timeout" in line)


def test_demo_prints_key_next_steps_and_a_human_summary(stack):
    from tests.support.e2e_stack import ADMIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | {"COLUMNS": "200"}
    r = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--api", stack.base, "--admin-key", ADMIN, "--timeout", "120"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    key = out.splitlines()[
        out.splitlines().index(next(s for s in out.splitlines() if "API key" in s)) + 1
    ].strip()
    assert key.startswith("orch_") and f"ORCH_API_KEY={key}" in out
    assert "Summary: run" in out and "SUCCEEDED" in out and "word count: 15000" in out
    assert "orch runs get run_" in out
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", out), "times are printed to the second"
    assert not out.rstrip().endswith("}"), "ends with a summary, not a JSON dump"
    # the key it printed works
    assert orch(stack, key, "runs", "list", "--json").returncode == 0
