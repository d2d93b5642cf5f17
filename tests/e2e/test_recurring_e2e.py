"""Recurring jobs end to end: real Temporal Schedules on the dev server, API and worker as processes,
SeaweedFS, SQLite, the local fleet driver. A job every minute (margin 0-30 s) whose runs succeed, pause,
trigger, delete; overlap "skip"; and chaos: the worker SIGKILLed around firings, still one run per firing.

Slow: each test waits for real minute boundaries."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.devstack import wait_for
from core.migrate import upgrade
from tests.support.e2e_stack import Stack, make_stack_settings, orch, record_history, temporal_cli

pytestmark = pytest.mark.slow
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT"}


@pytest.fixture(scope="module")
def stack(open_tmp_root, temporal_dev_server, s3_settings):
    tmp = Path(tempfile.mkdtemp(prefix="e2e-rec-", dir=open_tmp_root))
    settings = make_stack_settings(tmp, temporal_dev_server.ports["grpc"], s3_settings)
    upgrade(settings)
    st = Stack(settings, tmp)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


def shared_counter(path: Path) -> Path:
    """A file every run's app appends to: each run is its own uid, so it must be writable by all."""
    path.touch()
    path.chmod(0o666)
    return path


def every_minute(stack: Stack, h: dict, tpl: str, **over) -> dict:
    body = {
        "job_template_id": tpl,
        "cron": "* * * * *",
        "time_zone": "Europe/London",
        "margin_before": "PT0S",
        "margin_after": "PT30S",
        "catchup_window": "PT10M",
    } | over
    r = stack.http.post("/v1/recurring-jobs", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def runs_of(stack: Stack, h: dict, rid: str) -> list[dict]:
    r = stack.http.get(f"/v1/runs?recurring_job_id={rid}&limit=500", headers=h)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_runs(stack, h, rid, pred, timeout: float, what: str) -> list[dict]:
    got: list[dict] = []

    def ok() -> bool:
        nonlocal got
        got = runs_of(stack, h, rid)
        return pred(got)

    try:
        wait_for(ok, timeout, what, interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(
            f"{what}: {[(r['run_id'], r['status'], r['status_reason']) for r in got]}"
        ) from exc
    return got


def job_of(stack, h, run: dict) -> dict:
    r = stack.http.get(f"/v1/jobs/{run['job_id']}", headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def past_next_minute(extra: float) -> float:
    """Seconds from now until `extra` seconds past the next minute boundary."""
    now = datetime.now(UTC)
    nxt = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return (nxt - now).total_seconds() + extra


def check_one_run_per_firing(stack, h, runs: list[dict], margin_after: float = 30) -> list[datetime]:
    """Each run: the recurring job's id, a distinct nominal time (its earliest start), a planned start inside
    its margin. Returns the nominal times."""
    nominals = []
    for run in runs:
        job = job_of(stack, h, run)
        nominal = datetime.fromisoformat(job["earliest_start"])
        nominals.append(nominal)
        if run["planned_start"]:
            planned = datetime.fromisoformat(run["planned_start"])
            assert nominal - timedelta(seconds=1) <= planned <= nominal + timedelta(seconds=margin_after), run
    assert len(set(nominals)) == len(nominals), f"two runs for one firing: {sorted(nominals)}"
    return nominals


def firing_workflows(stack, h, rid) -> list[str]:
    g = stack.http.get(f"/v1/recurring-jobs/{rid}", headers=h).json()
    return g["schedule"]["recent_firing_workflows"]


def test_every_minute_pause_trigger_delete(stack, app_tmp):
    h = stack.client("rec-e2e")
    counter = shared_counter(app_tmp / "rec-starts")
    tpl = stack.template(h, args={"count_file": str(counter)}, name=f"nightly-etl-{time.monotonic_ns()}")
    rj = every_minute(stack, h, tpl, name="every minute")
    rid, sid = rj["id"], rj["schedule_id"]

    # operators see it: `temporal schedule list` shows it with its summary (template and margin)
    listed = temporal_cli(stack, "schedule", "list", "--long")
    line = next((x for x in listed.splitlines() if sid in x), "")
    assert "nightly-etl-" in line and "margin -PT0S/+PT30S" in line, listed

    runs = wait_runs(
        stack,
        h,
        rid,
        lambda rs: sum(r["status"] == "SUCCEEDED" for r in rs) >= 2,
        200,
        "two firings to succeed",
    )
    assert all(r["recurring_job_id"] == rid for r in runs)
    done = [r for r in runs if r["status"] == "SUCCEEDED"]
    for n in check_one_run_per_firing(stack, h, done):
        assert n.second == 0 and n.microsecond == 0  # nominal times are the cron's minutes

    # pause: in-flight firings finish, then no new run across a minute boundary
    assert stack.http.post(f"/v1/recurring-jobs/{rid}/pause", headers=h).json()["status"] == "paused"
    settled = wait_runs(
        stack, h, rid, lambda rs: all(r["status"] in TERMINAL for r in rs), 120, "runs to end"
    )
    before = len(settled)
    deadline = time.monotonic() + past_next_minute(15)
    wait_for(lambda: time.monotonic() >= deadline, 90, "a minute boundary to pass while paused")
    assert len(runs_of(stack, h, rid)) == before, "a paused recurring job made a run"

    # trigger now (also while paused): exactly one more run, which succeeds
    t = stack.http.post(f"/v1/recurring-jobs/{rid}/trigger", headers=h)
    assert t.status_code == 202, t.text
    runs = wait_runs(stack, h, rid, lambda rs: len(rs) == before + 1, 60, "the triggered run")
    new = next(r for r in runs if r["run_id"] not in {s["run_id"] for s in settled})
    stack.wait_status(h, new["run_id"], "SUCCEEDED", timeout=90)
    runs = runs_of(stack, h, rid)
    assert len(runs) == before + 1
    check_one_run_per_firing(stack, h, runs)
    # the app started exactly once per run
    assert len(counter.read_text().splitlines()) == sum(r["status"] == "SUCCEEDED" for r in runs)

    # the firing workflow's history, for the replay test
    wf = firing_workflows(stack, h, rid)[0]
    record_history(stack, wf, "recurring_firing_succeeded")

    # delete: the Schedule is gone from Temporal, past runs stay readable
    d = stack.http.delete(f"/v1/recurring-jobs/{rid}", headers=h)
    assert d.status_code == 200 and d.json()["status"] == "deleted"
    assert sid not in temporal_cli(stack, "schedule", "list")
    assert len(runs_of(stack, h, rid)) == before + 1
    assert stack.run(h, runs[0]["run_id"])["recurring_job_id"] == rid


def test_overlap_skip_creates_no_run_and_says_so(stack, app_tmp):
    h = stack.client("rec-overlap")
    tpl = stack.template(h, args={"sleep": 150})  # each run outlives the next firing
    rj = every_minute(stack, h, tpl, overlap="skip")
    rid = rj["id"]
    first = wait_runs(stack, h, rid, lambda rs: any(r["status"] == "RUNNING" for r in rs), 120, "a run")
    g: dict = {}

    def skipped() -> bool:
        nonlocal g
        g = stack.http.get(f"/v1/recurring-jobs/{rid}", headers=h).json()
        return (g["schedule"]["overlap_skipped"] or 0) >= 1

    wait_for(skipped, 100, "Temporal to skip a firing for overlap", interval=1)
    runs = runs_of(stack, h, rid)
    assert len(runs) == 1 and runs[0]["run_id"] == first[0]["run_id"], runs
    assert len(g["schedule"]["running_firings"]) == 1
    # delete with cancel_runs=true cancels the run in flight
    d = stack.http.delete(f"/v1/recurring-jobs/{rid}?cancel_runs=true", headers=h)
    assert d.status_code == 200, d.text
    stack.wait_status(h, runs[0]["run_id"], "CANCELLED", timeout=60)


def test_worker_killed_around_firings_still_one_run_each(stack, app_tmp):
    """SIGKILL the worker just before a firing (the firing waits for a worker) and again right after a
    firing made its run (mid-firing): every firing yields exactly one run, each app starts once."""
    h = stack.client("rec-chaos")
    counter = shared_counter(app_tmp / "chaos-starts")
    tpl = stack.template(h, args={"count_file": str(counter)})
    rj = every_minute(stack, h, tpl)
    rid = rj["id"]
    wait_runs(stack, h, rid, lambda rs: any(r["status"] == "SUCCEEDED" for r in rs), 150, "a first run")

    # 1) kill shortly before the next minute, start a new worker a few seconds after it
    deadline = time.monotonic() + past_next_minute(-4)
    wait_for(lambda: time.monotonic() >= deadline, 70, "4 s before a minute boundary")
    n_before = len(runs_of(stack, h, rid))
    for w in [w for w in stack.workers if w.alive()]:
        stack.kill_worker(w)
    deadline = time.monotonic() + 8
    wait_for(lambda: time.monotonic() >= deadline, 20, "the firing to happen with no worker")
    stack.start_worker()
    wait_runs(stack, h, rid, lambda rs: len(rs) > n_before, 60, "the firing made while no worker ran")

    # 2) kill right after the next firing created its run (the firing workflow is mid-way)
    n_now = len(runs_of(stack, h, rid))
    wait_runs(stack, h, rid, lambda rs: len(rs) > n_now, 90, "the next firing's run")
    for w in [w for w in stack.workers if w.alive()]:
        stack.kill_worker(w)
    stack.start_worker()

    stack.http.post(f"/v1/recurring-jobs/{rid}/pause", headers=h)
    runs = wait_runs(stack, h, rid, lambda rs: all(r["status"] in TERMINAL for r in rs), 180, "runs to end")
    assert all(r["status"] == "SUCCEEDED" for r in runs), [(r["status"], r["status_reason"]) for r in runs]
    nominals = sorted(check_one_run_per_firing(stack, h, runs))
    # no firing lost: one run per minute from the first to the last
    assert [(b - a) for a, b in zip(nominals, nominals[1:], strict=False)] == [timedelta(minutes=1)] * (
        len(nominals) - 1
    ), nominals
    starts = counter.read_text().splitlines()
    assert len(starts) == len(runs), f"{len(starts)} app starts for {len(runs)} runs"
    wf = firing_workflows(stack, h, rid)
    record_history(stack, wf[-1], "recurring_firing_worker_killed")
    stack.http.delete(f"/v1/recurring-jobs/{rid}", headers=h)


def test_cli_recurring_and_report(stack, tmp_path):
    """`orch recurring ...` and `orch report carbon` against the running stack."""

    h = stack.client("rec-cli")
    key = h["X-API-Key"]
    tpl = stack.template(h)
    made = orch(
        stack, key, "recurring", "create", "--template", tpl, "--cron", "0 1 * * *", "--tz", "Europe/London",
        "--before", "PT3H", "--after", "PT3H", "--arg", "n=1", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    rid = json.loads(made.stdout)["id"]
    listed = orch(stack, key, "recurring", "list")
    assert listed.returncode == 0 and rid in listed.stdout and "0 1 * * *" in listed.stdout
    got = orch(stack, key, "recurring", "get", rid)
    assert got.returncode == 0 and "margin" in got.stdout and "next" in got.stdout
    assert "paused" in orch(stack, key, "recurring", "pause", rid, "--note", "freeze").stdout
    assert "active" in orch(stack, key, "recurring", "resume", rid).stdout
    trig = orch(stack, key, "recurring", "trigger", rid)
    assert trig.returncode == 0 and "firing requested" in trig.stdout
    run = wait_runs(stack, h, rid, lambda rs: len(rs) == 1, 60, "the triggered run")[0]
    stack.wait_status(h, run["run_id"], "SUCCEEDED", timeout=90)
    assert "deleted" in orch(stack, key, "recurring", "delete", rid).stdout
    bad = orch(stack, key, "recurring", "create", "--template", tpl, "--cron", "61 * * * *")
    assert bad.returncode == 3 and "cron" in bad.stderr
    csv_path, svg_path = tmp_path / "ledger.csv", tmp_path / "ledger.svg"
    rep = orch(
        stack, key, "report", "carbon", "--group-by", "recurring_job", "--csv", str(csv_path),
        "--chart", str(svg_path),
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert rid in csv_path.read_text() and "<svg" in svg_path.read_text()
    data = json.loads(orch(stack, key, "report", "carbon", "--group-by", "recurring_job", "--json").stdout)
    assert data["total"]["runs"] == 1 and data["rows"][0]["key"] == rid
