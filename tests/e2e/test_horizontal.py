"""Horizontal operation under failure (issue 9): two APIs and two workers on ONE PostgreSQL, ONE Temporal dev
server and ONE SeaweedFS, all real processes on 127.0.0.1. Clients submit 300 jobs spread over both APIs,
~20 in flight, each with its own Idempotency-Key, and on a connection error retry the same request on the
other API (what a client behind a load balancer does). After 100 accepted submissions one API and one worker
are SIGKILLed. Afterwards:

- every retrying submission was accepted (201): one job and one run per Idempotency-Key, and the job list
  holds nothing else but at most one job per client that gave up (below);
- every accepted run reaches SUCCEEDED, nothing is left non-terminal;
- each app ran exactly once: its run id is in the shared counter file exactly once (the apps append with
  O_APPEND, so lines never interleave) and no unknown run id is;
- replaying every key afterwards answers the same job and run (Idempotent-Replayed).

Every 3rd client instead gives up when its request is cut by the kill. A job the dead API stored for it
must not stay PENDING either: that last part needs the PENDING reconciler (see the end of the test).

Elapsed times and the failover figures are printed (`-s` to see them).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import secrets
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.migrate import upgrade
from models.domain import TERMINAL_STATUSES
from models.workflow import workflow_id_for
from tests.support.common import PG_BASE, pg_reachable
from tests.support.e2e_stack import ADMIN, make_stack_settings
from tests.support.multi_stack import MultiStack, find_binary
from tests.support.zips import make_zip

pytestmark = pytest.mark.slow

N_JOBS = 300
IN_FLIGHT = 20
KILL_AFTER = 100  # accepted submissions before one API and one worker are SIGKILLed
RESCHEDULABLE_EVERY = 10  # every 10th job is RESCHEDULABLE with a window that only fits a start "now"
FINISH_TIMEOUT_SEC = 300.0  # bound for every run to be terminal once all submissions are accepted
SUBMIT_TIMEOUT_SEC = 180.0  # bound for one job to be accepted, retries included
# Every 3rd client gives up (does not retry) when its request is cut on an open connection: the API may have
# stored the job and died before starting its workflow. Such runs need the PENDING reconciler; see the end.
GIVE_UP_EVERY = 3
CUT = ("RemoteProtocolError", "ReadError", "ReadTimeout", "WriteError")
ORPHAN_TIMEOUT_SEC = 120.0  # bound for the runs of given-up requests once the accepted ones are done
TERMINAL = TERMINAL_STATUSES

# The app (a shell script: the cheapest process to start): append "<run id>\n" to the shared counter file
# through an O_APPEND descriptor (``>>``) in one write(2), so lines of concurrent apps never interleave.
APP = """\
counter="${1#--counter=}"
printf '%s\\n' "$ORCH_RUN_ID" >> "$counter"
"""

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def pg_url():
    """A throw-away schema on the machine's PostgreSQL, as tests/conftest.py makes them."""
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import psycopg

    schema = f"h_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def multi(tmp_path, temporal_dev_server, s3_settings, pg_url):
    settings = make_stack_settings(
        tmp_path / "data",  # ONE data dir for both workers: the local driver's attempt dirs live there
        temporal_dev_server.ports["grpc"],
        s3_settings,
        database_url=pg_url,
        maintenance_interval_sec=5,  # the reconciler: a pass every 5 s, PENDING runs older than 10 s
        reconcile_grace_sec=10,
    )
    upgrade(settings)  # migrations once, before any process starts
    stack = MultiStack(settings, tmp_path / "logs")
    for _ in range(2):
        stack.start_api()
        stack.start_worker()
    stack.wait_ready()
    yield stack
    stack.stop()


@dataclass
class Submission:
    i: int
    key: str
    body: dict
    attempts: list[tuple[int, str]] = field(default_factory=list)  # (api index, status code or error)
    result: dict | None = None
    gave_up: bool = False
    replayed: bool = False
    error: str | None = None
    latency: float = 0.0

    @property
    def failed_over(self) -> bool:
        return any(not outcome.isdigit() for _, outcome in self.attempts)


def _job_body(i: int, template_id: str) -> dict:
    now = datetime.now(UTC)
    if i % RESCHEDULABLE_EVERY == RESCHEDULABLE_EVERY - 1:
        # a 10-minute window and a 60 s expected runtime: the only candidate on the 15-minute grid is now
        return {
            "job_template_id": template_id,
            "type": "RESCHEDULABLE",
            "earliest_start": now.isoformat(),
            "latest_finish": (now + timedelta(minutes=10)).isoformat(),
            "risk_mode": "NEUTRAL",
        }
    return {
        "job_template_id": template_id,
        "type": "ONE_TIME",
        "intended_time": now.isoformat(),
        "risk_mode": "NEUTRAL",
    }


def _submit(
    sub: Submission,
    http: httpx.Client,
    urls: list[str],
    headers: dict,
    accepted: list[int],
    lock: threading.Lock,
) -> None:
    """A client's normal behaviour: POST with the job's Idempotency-Key; on a connection error (or a 5xx)
    send the very same request to the other API; give up on a 4xx (a bug, asserted by the test)."""
    api = sub.i % 2
    t0 = time.monotonic()
    deadline = t0 + SUBMIT_TIMEOUT_SEC
    backoff = 0.05
    while time.monotonic() < deadline:
        try:
            r = http.post(
                f"{urls[api]}/v1/jobs", json=sub.body, headers={**headers, "Idempotency-Key": sub.key}
            )
        except httpx.TransportError as exc:
            sub.attempts.append((api, type(exc).__name__))
            if sub.i % GIVE_UP_EVERY == 0 and type(exc).__name__ in CUT:
                sub.gave_up = True  # a client that does not retry
                return
            api = 1 - api
            if len(sub.attempts) > 1:  # the other API failed too: the client's retry backoff
                time.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            continue
        sub.attempts.append((api, str(r.status_code)))
        if r.status_code == 201:
            sub.result = r.json()
            sub.replayed = r.headers.get("Idempotent-Replayed") == "true"
            sub.latency = time.monotonic() - t0
            with lock:
                accepted[0] += 1
            return
        if r.status_code >= 500:
            api = 1 - api
            time.sleep(backoff)  # the client's retry backoff before trying again
            backoff = min(2.0, backoff * 2)
            continue
        sub.error = f"{r.status_code}: {r.text}"
        return
    sub.error = f"not accepted within {SUBMIT_TIMEOUT_SEC:.0f}s: {sub.attempts[-5:]}"


def _all_runs(http: httpx.Client, headers: dict) -> list[dict]:
    runs: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = http.get("/v1/runs", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        runs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return runs


def _all_jobs(http: httpx.Client, headers: dict) -> list[dict]:
    jobs: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = http.get("/v1/jobs", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        jobs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def _describe(stack: MultiStack, run_ids: list[str]) -> str:
    """What Temporal says about stuck runs (pending activities, their attempts and last failures)."""
    out = []
    for rid in run_ids:
        p = subprocess.run(
            [
                find_binary("temporal"),
                "workflow",
                "describe",
                "-w",
                workflow_id_for(rid),
                "--address",
                stack.settings.temporal_address,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        out.append(f"--- run-{rid}\n{p.stdout[-3000:]}{p.stderr[-500:]}")
    return "\n".join(out)


def test_two_apis_two_workers_survive_sigkill(multi: MultiStack, app_tmp: Path):
    urls = [multi.url(a) for a in multi.apis]
    counter = app_tmp / "counter"  # apps run under their own uids: a world-writable (sticky) dir
    counter.touch(mode=0o666)
    counter.chmod(0o666)
    t_start = time.monotonic()

    # one client, one artifact, one template (through the first API)
    with httpx.Client(base_url=urls[0], timeout=30) as http:
        r = http.post("/v1/clients", json={"name": "horizontal"}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 201, r.text
        headers = {"X-API-Key": r.json()["api_key"]}
        art = http.post(
            "/v1/artifacts/upload",
            headers=headers,
            files={"file": ("app.zip", make_zip({"run.sh": APP}), "application/zip")},
            data={"version": "1.0.0"},
        )
        assert art.status_code in (200, 201), art.text
        r = http.post(
            "/v1/job-templates",
            headers=headers,
            json={
                "name": "count-once",
                "app_artifact_id": art.json()["artifact_id"],
                "default_args": {"counter": str(counter)},
                "data_uri": "s3://data-bucket/input",
                "fleet_template_id": "m5.large",
                "expected_runtime_sec": 60,
            },
        )
        assert r.status_code == 201, r.text
        template_id = r.json()["id"]

    # 300 submissions, ~20 in flight, spread over both APIs; SIGKILL API 0 and worker 0 after 100 accepted
    subs = [Submission(i, f"horizontal-{i}", _job_body(i, template_id)) for i in range(N_JOBS)]
    accepted, lock = [0], threading.Lock()
    t_submit = time.monotonic()
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=2 * IN_FLIGHT))  # shared, thread-safe
    with http, cf.ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(_submit, s, http, urls, headers, accepted, lock) for s in subs]
        deadline = time.monotonic() + SUBMIT_TIMEOUT_SEC
        while accepted[0] < KILL_AFTER and time.monotonic() < deadline:
            assert not any(f.done() and f.exception() for f in futures), [f.exception() for f in futures]
            time.sleep(0.05)  # poll period of the bounded wait for the kill point
        assert accepted[0] >= KILL_AFTER, f"only {accepted[0]} submissions accepted before the kill"
        in_flight_at_kill = sum(1 for f in futures if f.running())
        MultiStack.sigkill(multi.apis[0])
        MultiStack.sigkill(multi.workers[0])
        t_kill = time.monotonic()
        for f in futures:
            f.result(timeout=SUBMIT_TIMEOUT_SEC + 30)
    t_accepted = time.monotonic()
    assert multi.apis[1].alive() and multi.workers[1].alive(), "a surviving process died"

    errors = [(s.key, s.error) for s in subs if s.error]
    assert not errors, f"{len(errors)} submissions were not accepted: {errors[:5]}"
    gave_up = [s for s in subs if s.gave_up]
    subs = [s for s in subs if not s.gave_up]  # from here on: the accepted submissions
    failed_over = [s for s in subs if s.failed_over]
    interrupted = [s for s in subs if any(o in ("RemoteProtocolError", "ReadError") for _, o in s.attempts)]
    replayed_after_failover = [s for s in failed_over if s.replayed]
    assert failed_over, "no submission hit the killed API: the failover path was not exercised"
    job_ids = [s.result["job_id"] for s in subs]
    run_ids = [s.result["run_id"] for s in subs]
    assert len(set(job_ids)) == len(subs), "two Idempotency-Keys answered the same job"
    assert len(set(run_ids)) == len(subs), "two Idempotency-Keys answered the same run"

    survivor = httpx.Client(base_url=urls[1], timeout=30)
    try:
        # exactly the accepted jobs exist, each with its one run: no duplicate or orphan from a dead request
        # (plus at most one job per given-up request: the killed API may have stored it before dying)
        jobs = {j["id"]: j for j in _all_jobs(survivor, headers)}
        assert set(job_ids) <= set(jobs), f"{len(set(job_ids) - set(jobs))} accepted jobs missing"
        orphan_jobs = set(jobs) - set(job_ids)
        assert len(orphan_jobs) <= len(gave_up), f"{len(orphan_jobs)} jobs nobody was told about"
        assert all(len(jobs[j]["run_ids"]) == 1 for j in orphan_jobs), "a job with several runs"
        orphan_runs = {jobs[j]["run_ids"][0] for j in orphan_jobs}
        for s in subs:
            assert jobs[s.result["job_id"]]["run_ids"] == [s.result["run_id"]], (
                s.key,
                jobs[s.result["job_id"]],
            )

        # every accepted run reaches a terminal state, polled through the surviving API (bounded)
        runs: dict[str, dict] = {}

        def all_terminal() -> bool:
            nonlocal runs
            runs = {r["run_id"]: r for r in _all_runs(survivor, headers)}
            return all(runs.get(rid, {}).get("status") in TERMINAL for rid in run_ids)

        deadline = time.monotonic() + FINISH_TIMEOUT_SEC
        while not all_terminal() and time.monotonic() < deadline:
            time.sleep(2.0)  # poll period of the bounded wait above
        t_done = time.monotonic()
        assert set(runs) == set(run_ids) | orphan_runs, "the run list differs from the jobs' runs"
        orphans = {rid: runs[rid] for rid in orphan_runs}
        runs = {rid: runs[rid] for rid in run_ids}
        status_counts = collections.Counter(r["status"] for r in runs.values())
        # A run left PENDING here never got its workflow started. With this client (it always retries on
        # the other API with the same key, and the replay starts the workflow) none should be; without the
        # client's retry, the PENDING reconciler being built in parallel is what must pick such runs up.
        pending = sorted(rid for rid, r in runs.items() if r["status"] == "PENDING")
        if pending:
            by_run = {s.result["run_id"]: s for s in subs}
            print("stranded PENDING:", [(by_run[rid].key, by_run[rid].attempts) for rid in pending])
            print(_describe(multi, pending[:3]))
        assert not pending, f"{len(pending)} runs still PENDING (never planned): {pending[:5]}"
        stuck = {
            rid: (r["status"], r.get("status_reason"))
            for rid, r in runs.items()
            if r["status"] not in TERMINAL
        }
        if stuck:
            print(_describe(multi, list(stuck)[:3]))
        assert not stuck, (
            f"{len(stuck)} runs not terminal after {FINISH_TIMEOUT_SEC:.0f}s: {list(stuck.items())[:5]}"
        )
        bad = {
            rid: (r["status"], r.get("status_reason"))
            for rid, r in runs.items()
            if r["status"] != "SUCCEEDED"
        }
        assert not bad, f"{status_counts}: e.g. {list(bad.items())[:5]}"

        # each app ran exactly once: its run id once in the counter file, and no unknown run id there
        lines = collections.Counter(counter.read_text().splitlines())
        twice = {rid: n for rid, n in lines.items() if n != 1}
        assert not twice, f"{len(twice)} apps ran more than once: {list(twice.items())[:5]}"
        assert set(run_ids) <= set(lines), (
            f"{len(set(run_ids) - set(lines))} accepted runs never ran their app"
        )
        assert set(lines) <= set(run_ids) | orphan_runs, (
            f"{len(set(lines) - set(run_ids) - orphan_runs)} unknown run ids ran"
        )

        # afterwards, each key still answers its one job and run (checked only now, so a replay cannot have
        # started a stranded run's workflow before the assertions above)
        def replay(s: Submission) -> tuple[str, int, dict, str | None]:
            r = survivor.post("/v1/jobs", json=s.body, headers={**headers, "Idempotency-Key": s.key})
            return s.key, r.status_code, r.json(), r.headers.get("Idempotent-Replayed")

        by_key = {s.key: s for s in subs}
        with cf.ThreadPoolExecutor(IN_FLIGHT) as pool:
            for key, code, body, flag in pool.map(replay, subs):
                s = by_key[key]
                assert (code, flag) == (201, "true"), (key, code, body)
                assert (body["job_id"], body["run_id"]) == (s.result["job_id"], s.result["run_id"]), key
                assert body["status"] == "SUCCEEDED", (key, body)

        n_stranded = sum(1 for r in orphans.values() if r["status"] == "PENDING")
        latencies = [s.latency for s in subs]
        figures = [
            f"horizontal: {N_JOBS} submissions ({N_JOBS // RESCHEDULABLE_EVERY} RESCHEDULABLE), "
            f"{IN_FLIGHT} in flight, 2 APIs + 2 workers on PostgreSQL; SIGKILL of 1 API + 1 worker after "
            f"{KILL_AFTER} accepted ({in_flight_at_kill} submissions in flight)",
            f"set-up {t_submit - t_start:.1f}s; all {len(subs)} accepted {t_accepted - t_submit:.1f}s after "
            f"the first submission ({t_accepted - t_kill:.1f}s after the kill); all SUCCEEDED "
            f"{t_done - t_accepted:.1f}s later; total {t_done - t_start:.1f}s",
            f"submit latency p50 {statistics.median(latencies) * 1000:.0f} ms, max "
            f"{max(latencies) * 1000:.0f} ms; failed over to the other API: {len(failed_over)} "
            f"({len(interrupted)} cut on an open connection, {len(replayed_after_failover)} answered as a "
            f"replay of what the killed API had stored)",
            f"{len(gave_up)} clients gave up after a cut request, leaving {len(orphan_runs)} stored jobs "
            f"({n_stranded} of them PENDING when the rest was done)",
        ]
        print("\n" + "\n  ".join(figures))

        # ---- the PENDING reconciler (activities/maintenance.py) ---------------------------------------
        # A request cut when the API was SIGKILLed, whose client did not retry, may have left a stored job
        # whose workflow was never started. Intended behaviour: nothing stays PENDING; the reconciler starts
        # such a run (its app then runs exactly once like any other) within ORPHAN_TIMEOUT_SEC. Without it,
        # these runs stay PENDING forever. (If the reconciler only picks up runs PENDING for longer than some
        # age, set that age well below the time the accepted runs take, in make_stack_settings above.)

        def orphans_terminal() -> bool:
            nonlocal orphans
            current = {r["run_id"]: r for r in _all_runs(survivor, headers)}
            orphans = {rid: current[rid] for rid in orphan_runs}
            return all(r["status"] in TERMINAL for r in orphans.values())

        deadline = time.monotonic() + ORPHAN_TIMEOUT_SEC
        while not orphans_terminal() and time.monotonic() < deadline:
            time.sleep(2.0)  # poll period of the bounded wait above
        not_done = {
            rid: (r["status"], r.get("status_reason"))
            for rid, r in orphans.items()
            if r["status"] != "SUCCEEDED"
        }
        if not_done:  # does Temporal know these workflows at all? ("not found" = never started)
            print(_describe(multi, list(not_done)[:2]))
        assert not not_done, (
            f"{len(not_done)} of {len(orphans)} runs of given-up requests did not succeed "
            f"({n_stranded} were still PENDING when the accepted runs were done): {not_done}"
        )
        lines = collections.Counter(counter.read_text().splitlines())
        assert all(lines[rid] == 1 for rid in orphan_runs), {rid: lines[rid] for rid in orphan_runs}
    finally:
        survivor.close()
