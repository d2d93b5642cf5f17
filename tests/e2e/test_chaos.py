"""Chaos and durability on the real stack: restart the Temporal server (persistent --db-filename) while runs
sleep and run; kill the API during submissions. Afterwards every accepted job has exactly one run in the
right final state, no app ran twice, nothing is left running."""

from __future__ import annotations

import concurrent.futures as cf
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cli.devstack import free_port, start_temporal, wait_for
from core.migrate import upgrade
from tests.support.e2e_stack import Stack, alive, make_stack_settings

pytestmark = pytest.mark.slow  # API and worker as processes (a stack of their own)


@pytest.fixture
def own_temporal(tmp_path):
    """A Temporal dev server this test may stop and restart (same port, same database file)."""
    port = free_port()
    holder = {"server": start_temporal(tmp_path / "temporal.db", port, None, tmp_path / "temporal.log")}

    def restart():
        holder["server"].stop()
        holder["server"] = start_temporal(tmp_path / "temporal.db", port, None, tmp_path / "temporal2.log")

    holder["port"], holder["restart"] = port, restart
    yield holder
    holder["server"].stop()


@pytest.fixture
def chaos_stack(tmp_path, own_temporal, s3_settings, open_tmp_root):
    data = Path(tempfile.mkdtemp(prefix="chaos-", dir=open_tmp_root))  # apps run under their own uids
    settings = make_stack_settings(data, own_temporal["port"], s3_settings)
    upgrade(settings)
    st = Stack(settings, tmp_path)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


def test_temporal_restart_while_runs_sleep_and_run(chaos_stack, own_temporal, app_tmp):
    st = chaos_stack
    h = st.client()
    counts = [app_tmp / "count-running", app_tmp / "count-sleeping"]
    running = st.submit(h, st.template(h, args={"sleep": 4, "count_file": str(counts[0])}))
    sleeping = st.submit(
        h,
        st.template(h, args={"count_file": str(counts[1])}),
        intended_time=(datetime.now(UTC) + timedelta(seconds=10)).isoformat(),
    )
    st.wait_status(h, running["run_id"], "RUNNING")
    st.wait_status(h, sleeping["run_id"], "SCHEDULED")
    own_temporal["restart"]()
    for job in (running, sleeping):
        run = st.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=120)
        assert run["status"] == "SUCCEEDED", run
    for c in counts:
        starts = c.read_text().splitlines()
        assert len(starts) == 1, f"{c.name}: {len(starts)} starts"
        assert not alive(int(starts[0].split()[1]))


def test_api_killed_during_submissions(chaos_stack, app_tmp):
    """Clients retry with their Idempotency-Key until accepted; the API dies and comes back meanwhile."""
    st = chaos_stack
    h = st.client()
    count = app_tmp / "count"
    count.touch()
    count.chmod(0o666)  # 24 runs append to it, each under its own uid
    tpl = st.template(h, args={"count_file": str(count)})
    n = 24
    body = {
        "job_template_id": tpl,
        "type": "ONE_TIME",
        "intended_time": datetime.now(UTC).isoformat(),
        "risk_mode": "NEUTRAL",
    }

    def submit(i: int) -> str:
        """Retry until the API accepts; return the job id."""
        for _ in range(200):
            try:
                r = httpx.post(
                    f"{st.base}/v1/jobs", json=body, headers={**h, "Idempotency-Key": f"k-{i}"}, timeout=10
                )
                if r.status_code == 201:
                    return r.json()["job_id"]
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # the client's retry backoff, as a real client would do
        raise AssertionError(f"job {i} never accepted")

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(submit, i) for i in range(n)]
        wait_for(lambda: sum(f.done() for f in futures) >= 4, 60, "some submissions")
        st.api.stop(timeout=0.1)  # SIGTERM, then SIGKILL: in-flight requests die
        st.start_api()
        job_ids = [f.result(timeout=120) for f in futures]
    assert len(set(job_ids)) == n, "an Idempotency-Key produced two jobs"
    runs = []
    cursor = None
    while True:
        page = st.http.get(
            "/v1/runs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}, headers=h
        ).json()
        runs += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(r["job_id"] for r in runs) == sorted(job_ids), "every accepted job has exactly one run"
    for r in runs:
        final = st.wait_status(h, r["run_id"], {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}, timeout=120)
        assert final["status"] == "SUCCEEDED", final
    assert len(count.read_text().splitlines()) == n, "some app ran twice or not at all"


def test_worker_killed_during_launch(chaos_stack, app_tmp):
    """SIGKILL the worker as soon as the run is launching (or just launched); a new worker finishes it and
    the app has started exactly once: the launch is idempotent by run id + attempt."""
    st = chaos_stack
    h = st.client()
    count = app_tmp / "count"
    job = st.submit(h, st.template(h, args={"sleep": 2, "count_file": str(count)}))
    st.wait_status(h, job["run_id"], {"LAUNCHING", "RUNNING"})
    for w in [w for w in st.workers if w.alive()]:
        st.kill_worker(w)
    st.start_worker()
    run = st.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=120)
    assert run["status"] == "SUCCEEDED", run
    starts = count.read_text().splitlines()
    assert len(starts) == 1, f"the app started {len(starts)} times"
    assert not alive(int(starts[0].split()[1]))
