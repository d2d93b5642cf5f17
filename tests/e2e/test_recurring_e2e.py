"""Recurring jobs end to end: real Temporal Schedules on the dev server, API and worker as processes,
SeaweedFS, SQLite, the local fleet driver; one stack for the module.

- The cron path: a job every minute (margin 0-30 s) is created when the stack starts, so its first minute
  boundary passes while the other tests run; the last test checks its runs succeeded at :00 and deletes it.
- Everything whose subject is not the cron itself uses an ``interval`` calendar of seconds (epoch-aligned, so
  fire times are known in advance), trigger-now, and bounded waits on conditions: pause / trigger / delete,
  overlap "skip", the worker SIGKILLed around firings, and the catch-up window after worker downtime.
"""

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
    settings = make_stack_settings(
        tmp, temporal_dev_server.ports["grpc"], s3_settings, recurring_min_interval_sec=5
    )
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


def create(stack: Stack, h: dict, tpl: str, **over) -> dict:
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


def every(stack: Stack, h: dict, tpl: str, seconds: int, **over) -> dict:
    """An interval calendar of ``seconds`` with the whole period as margin after each nominal time."""
    over = {"cron": None, "interval": f"PT{seconds}S", "margin_after": f"PT{seconds}S"} | over
    return create(stack, h, tpl, **over)


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
        wait_for(ok, timeout, what, interval=0.3)
    except TimeoutError as exc:
        raise AssertionError(
            f"{what}: {[(r['run_id'], r['status'], r['status_reason']) for r in got]}"
        ) from exc
    return got


def wait_until(t: datetime, what: str) -> None:
    """Block until wall-clock time ``t`` (a bounded wait on the clock itself)."""
    left = (t - datetime.now(UTC)).total_seconds()
    wait_for(lambda: datetime.now(UTC) >= t, max(left, 0) + 5, what, interval=0.1)


def next_fire(period: int, at_least: float) -> datetime:
    """The first epoch-aligned fire time of an interval of ``period`` s at least ``at_least`` s from now."""
    earliest = datetime.now(UTC).timestamp() + at_least
    return datetime.fromtimestamp((earliest // period + 1) * period, UTC)


def job_of(stack, h, run: dict) -> dict:
    r = stack.http.get(f"/v1/jobs/{run['job_id']}", headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def check_one_run_per_firing(stack, h, runs: list[dict], margin_after: float) -> list[datetime]:
    """Each run: the recurring job's id, a distinct nominal time (its earliest start), a planned start inside
    its margin. Returns the nominal times."""
    nominals = []
    for run in runs:
        assert run["recurring_job_id"] == runs[0]["recurring_job_id"], run
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


def kill_workers(stack: Stack) -> None:
    for w in [w for w in stack.workers if w.alive()]:
        stack.kill_worker(w)


@pytest.fixture(scope="module")
def cron_job(stack, open_tmp_root):
    """The every-minute cron job, made as the module starts: its minute boundary passes during the others."""
    h = stack.client("rec-cron")
    d = Path(tempfile.mkdtemp(prefix="app-tmp-cron-", dir=open_tmp_root))
    d.chmod(0o1777)  # like app_tmp (function-scoped), for a module-scoped job
    counter = shared_counter(d / "cron-starts")
    tpl = stack.template(h, args={"count_file": str(counter)}, name=f"nightly-etl-{time.monotonic_ns()}")
    rj = create(stack, h, tpl, name="every minute")
    return h, rj, counter


def test_interval_pause_trigger_delete(stack, app_tmp, cron_job):
    h = stack.client("rec-e2e")
    counter = shared_counter(app_tmp / "rec-starts")
    tpl = stack.template(h, args={"count_file": str(counter)})
    rid = every(stack, h, tpl, 10)["id"]
    runs = wait_runs(
        stack,
        h,
        rid,
        lambda rs: sum(r["status"] == "SUCCEEDED" for r in rs) >= 2,
        60,
        "two firings to succeed",
    )
    done = [r for r in runs if r["status"] == "SUCCEEDED"]
    for n in check_one_run_per_firing(stack, h, done, 10):
        assert n.timestamp() % 10 == 0  # nominal times are the interval's (epoch-aligned) ticks

    # pause: in-flight firings finish, then no new run across a fire time
    assert stack.http.post(f"/v1/recurring-jobs/{rid}/pause", headers=h).json()["status"] == "paused"
    settled = wait_runs(stack, h, rid, lambda rs: all(r["status"] in TERMINAL for r in rs), 60, "runs to end")
    before = len(settled)
    wait_until(next_fire(10, 0) + timedelta(seconds=4), "a fire time to pass while paused")
    assert len(runs_of(stack, h, rid)) == before, "a paused recurring job made a run"

    # trigger now (also while paused): exactly one more run, which succeeds
    t = stack.http.post(f"/v1/recurring-jobs/{rid}/trigger", headers=h)
    assert t.status_code == 202, t.text
    runs = wait_runs(stack, h, rid, lambda rs: len(rs) == before + 1, 60, "the triggered run")
    new = next(r for r in runs if r["run_id"] not in {s["run_id"] for s in settled})
    stack.wait_status(h, new["run_id"], "SUCCEEDED", timeout=60)
    runs = runs_of(stack, h, rid)
    assert len(runs) == before + 1
    check_one_run_per_firing(stack, h, runs, 10)
    # the app started exactly once per run
    assert len(counter.read_text().splitlines()) == sum(r["status"] == "SUCCEEDED" for r in runs)

    # the firing workflow's history, for the replay test
    record_history(stack, firing_workflows(stack, h, rid)[0], "recurring_firing_succeeded")

    # delete: the Schedule is gone from Temporal, past runs stay readable
    sid = stack.http.get(f"/v1/recurring-jobs/{rid}", headers=h).json()["schedule_id"]
    d = stack.http.delete(f"/v1/recurring-jobs/{rid}", headers=h)
    assert d.status_code == 200 and d.json()["status"] == "deleted"
    assert sid not in temporal_cli(stack, "schedule", "list")
    assert len(runs_of(stack, h, rid)) == before + 1
    assert stack.run(h, runs[0]["run_id"])["recurring_job_id"] == rid


def test_overlap_skip_creates_no_run_and_says_so(stack, app_tmp):
    h = stack.client("rec-overlap")
    tpl = stack.template(h, args={"sleep": 60})  # each run outlives the next firings
    rid = every(stack, h, tpl, 10, overlap="skip")["id"]
    first = wait_runs(stack, h, rid, lambda rs: any(r["status"] == "RUNNING" for r in rs), 40, "a run")
    g: dict = {}

    def skipped() -> bool:
        nonlocal g
        g = stack.http.get(f"/v1/recurring-jobs/{rid}", headers=h).json()
        return (g["schedule"]["overlap_skipped"] or 0) >= 1

    wait_for(skipped, 30, "Temporal to skip a firing for overlap", interval=0.5)
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
    # allow_all: a firing never waits for the previous one, so "one run per tick" is exact even when a run
    # is slowed down by the kills
    rid = every(stack, h, tpl, 20, overlap="allow_all", catchup_window="PT1M")["id"]
    wait_runs(stack, h, rid, lambda rs: any(r["status"] == "SUCCEEDED" for r in rs), 60, "a first run")

    # 1) kill shortly before the next fire time, start a new worker a few seconds after it
    fire = next_fire(20, 4)
    wait_until(fire - timedelta(seconds=3), "3 s before a fire time")
    n_before = len(runs_of(stack, h, rid))
    kill_workers(stack)
    wait_until(fire + timedelta(seconds=4), "the firing to happen with no worker")
    stack.start_worker()
    wait_runs(stack, h, rid, lambda rs: len(rs) > n_before, 60, "the firing made while no worker ran")

    # 2) kill right after the next firing created its run (the firing workflow is mid-way)
    n_now = len(runs_of(stack, h, rid))
    wait_runs(stack, h, rid, lambda rs: len(rs) > n_now, 60, "the next firing's run")
    kill_workers(stack)
    stack.start_worker()

    stack.http.post(f"/v1/recurring-jobs/{rid}/pause", headers=h)
    runs = wait_runs(stack, h, rid, lambda rs: all(r["status"] in TERMINAL for r in rs), 180, "runs to end")
    # Every run SUCCEEDED, except that the second kill may catch the new run's own JobRunWorkflow with an
    # activity in flight (a plan is retried once its 20 s heartbeat timeout expires, a status update after
    # up to 60 s): that one run may then miss its 20 s margin and end EXPIRED, never started late (the
    # margin guarantee).
    late = [(r["status"], r["started_at"], r["status_reason"]) for r in runs if r["status"] != "SUCCEEDED"]
    assert len(late) <= 1, late
    assert all(st == "EXPIRED" and not started and "could not start by" in why for st, started, why in late)
    nominals = sorted(check_one_run_per_firing(stack, h, runs, 20))
    # no firing lost: one run per tick from the first to the last
    assert [(b - a) for a, b in zip(nominals, nominals[1:], strict=False)] == [timedelta(seconds=20)] * (
        len(nominals) - 1
    ), nominals
    starts = counter.read_text().splitlines()
    ran = sum(r["status"] == "SUCCEEDED" for r in runs)
    assert len(starts) == ran, f"{len(starts)} app starts for {ran} runs that ran"
    record_history(stack, firing_workflows(stack, h, rid)[-1], "recurring_firing_worker_killed")
    stack.http.delete(f"/v1/recurring-jobs/{rid}", headers=h)


def test_firing_while_worker_down_follows_the_catchup_window(stack, app_tmp):
    """Two recurring jobs fire at the same tick while no worker runs; the worker returns after both margins
    ended: the one whose catch-up window (PT1M) still holds makes exactly one run, started at once, which
    succeeds; the one whose window (PT10S) has passed makes no run, only an EXPIRED record with the reason."""
    h = stack.client("rec-catchup")
    fire = next_fire(15, 8)  # leaves time to create both before it
    one_firing = {
        "margin_after": "PT2S",
        "start_at": (fire - timedelta(seconds=1)).isoformat(),
        "end_at": (fire + timedelta(seconds=5)).isoformat(),
    }
    jobs = {}
    for name, window in (("within", "PT1M"), ("beyond", "PT10S")):
        counter = shared_counter(app_tmp / f"catchup-{name}")
        tpl = stack.template(h, args={"count_file": str(counter)})
        jobs[name] = (every(stack, h, tpl, 15, catchup_window=window, **one_firing)["id"], counter)
    wait_until(fire - timedelta(seconds=2), "2 s before the fire time")
    kill_workers(stack)
    wait_until(fire + timedelta(seconds=12), "both margins and the short window to end with no worker")
    stack.start_worker()
    handled_after = datetime.now(UTC)

    rid, counter = jobs["within"]
    run = wait_runs(stack, h, rid, lambda rs: len(rs) == 1, 60, "the caught-up firing's run")[0]
    run = stack.wait_status(h, run["run_id"], "SUCCEEDED", timeout=60)
    job = job_of(stack, h, run)
    assert datetime.fromisoformat(job["earliest_start"]) >= handled_after - timedelta(seconds=1)  # caught up
    assert datetime.fromisoformat(run["started_at"]) <= handled_after + timedelta(seconds=60)
    assert len(counter.read_text().splitlines()) == 1

    rid, counter = jobs["beyond"]
    late = wait_runs(stack, h, rid, lambda rs: len(rs) == 1 and rs[0]["status"] in TERMINAL, 60, "a record")
    assert late[0]["status"] == "EXPIRED" and late[0]["started_at"] is None, late
    reason = late[0]["status_reason"]
    assert "after its margin ended" in reason and "beyond its catch-up window PT10S" in reason, reason
    assert counter.read_text() == ""  # its app never started
    for rid, _ in jobs.values():  # and no other firing came (end_at), nothing more was made
        assert len(runs_of(stack, h, rid)) == 1
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


def test_cron_every_minute_end_to_end(stack, cron_job):
    """The issue's "every minute" cron (margin 0-30 s), made when the module started: runs that reach
    SUCCEEDED at the cron's minutes, each visible through REST with its recurring-job id; `temporal schedule
    list` shows it with its summary; delete stops it."""
    h, rj, counter = cron_job
    rid, sid = rj["id"], rj["schedule_id"]
    # operators see it: `temporal schedule list` shows it with its summary (template and margin)
    listed = temporal_cli(stack, "schedule", "list", "--long")
    line = next((x for x in listed.splitlines() if sid in x), "")
    assert "nightly-etl-" in line and "margin -PT0S/+PT30S" in line, listed

    runs = wait_runs(
        stack, h, rid, lambda rs: any(r["status"] == "SUCCEEDED" for r in rs), 90, "a cron firing to succeed"
    )
    assert all(r["recurring_job_id"] == rid for r in runs)
    assert not [r for r in runs if r["status"] == "FAILED"], runs
    done = [r for r in runs if r["status"] == "SUCCEEDED"]
    for n in check_one_run_per_firing(stack, h, done, 30):
        assert n.second == 0 and n.microsecond == 0  # nominal times are the cron's minutes
    assert len(counter.read_text().splitlines()) >= len(done)

    d = stack.http.delete(f"/v1/recurring-jobs/{rid}", headers=h)
    assert d.status_code == 200 and d.json()["status"] == "deleted"
    assert sid not in temporal_cli(stack, "schedule", "list")  # nothing left to fire
    assert stack.run(h, runs[0]["run_id"])["recurring_job_id"] == rid  # past runs stay readable
