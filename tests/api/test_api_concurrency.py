"""The API under concurrency, on SQLite and PostgreSQL, through a real uvicorn server (a subprocess) and
the real Temporal dev server (no worker on the task queue: workflows start and wait, which is all the API
needs). TestClient would serialise the requests, so these use httpx's async client.

- parallel template creations and job submissions never answer 5xx;
- a sustained submission load (200 at 20 in flight, plus one template a second) never answers 5xx, and
  /healthz keeps answering quickly throughout (the event loop never waits on the database);
- a unique-name race answers one 201 and 409s, quickly; an Idempotency-Key race gives one job;
- date/window limits are 422s naming the limit and its setting; extreme datetimes are 422s, never 500s;
- an oversize body is a 413 also when it is chunked (no Content-Length);
- a database lock held elsewhere for longer than the lock/busy timeout is a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cli.devstack import free_port
from models.db import Job
from tests.support.api import count, is_problem
from tests.support.e2e_stack import ADMIN, Stack


@pytest.fixture(scope="module")
def stack(api_settings, temporal_dev_server, tmp_path_factory):
    settings = api_settings.model_copy(
        update={
            "admin_api_key": ADMIN,
            "api_port": free_port(),
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-concurrency",
        }
    )
    s = Stack(settings, tmp_path_factory.mktemp("conc-logs"))
    s.start_api()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def tenant(stack):
    h = stack.client("conc")
    return h, stack.template(h, expected_runtime_sec=1800)


def artifact_of(stack, h, tpl: str) -> str:
    return stack.http.get(f"/v1/job-templates/{tpl}", headers=h).json()["app_artifact_id"]


def job_body(tpl: str, i: int) -> dict:
    now = datetime.now(UTC)
    if i % 2:
        return {
            "job_template_id": tpl,
            "type": "ONE_TIME",
            "intended_time": (now + timedelta(hours=2)).isoformat(),
            "risk_mode": "NEUTRAL",
        }
    return {
        "job_template_id": tpl,
        "type": "RESCHEDULABLE",
        "earliest_start": (now + timedelta(hours=1)).isoformat(),
        "latest_finish": (now + timedelta(hours=13)).isoformat(),
        "risk_mode": "NEUTRAL",
    }


def template_body(art: str, name: str) -> dict:
    return {
        "name": name,
        "app_artifact_id": art,
        "data_uri": "s3://bucket/data",
        "fleet_template_id": "m5.large",
        "expected_runtime_sec": 600,
    }


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kw) -> tuple[int, float, str]:
    t0 = time.monotonic()
    r = await client.request(method, url, **kw)
    return r.status_code, time.monotonic() - t0, r.text[:300]


def test_parallel_template_creations_and_submissions_never_5xx(stack, tenant):
    h, tpl = tenant
    art = artifact_of(stack, h, tpl)
    tag = time.monotonic_ns()

    async def go():
        async with httpx.AsyncClient(base_url=stack.base, timeout=60, headers=h) as c:
            tasks = [
                _timed(c, "POST", "/v1/job-templates", json=template_body(art, f"p-{tag}-{i}"))
                for i in range(20)
            ]
            tasks += [_timed(c, "POST", "/v1/jobs", json=job_body(tpl, i)) for i in range(20)]
            return await asyncio.gather(*tasks)

    results = asyncio.run(go())
    bad = [(s, t) for s, _, t in results if s != 201]
    assert not bad, bad


@pytest.mark.slow
def test_sustained_submissions_keep_the_api_responsive(stack, tenant):
    """200 submissions at 20 in flight, one template creation a second, /healthz polled throughout."""
    h, tpl = tenant
    art = artifact_of(stack, h, tpl)
    tag = time.monotonic_ns()

    async def go():
        results: list[tuple[int, float, str]] = []
        done = asyncio.Event()
        async with httpx.AsyncClient(
            base_url=stack.base, timeout=60, headers=h, limits=httpx.Limits(max_connections=40)
        ) as c:
            queue = list(range(200))

            async def submitter():
                while queue:
                    i = queue.pop()
                    results.append(await _timed(c, "POST", "/v1/jobs", json=job_body(tpl, i)))

            async def templates():
                n = 0
                while not done.is_set():
                    body = template_body(art, f"s-{tag}-{n}")
                    results.append(await _timed(c, "POST", "/v1/job-templates", json=body))
                    n += 1
                    try:
                        await asyncio.wait_for(done.wait(), 1.0)
                    except TimeoutError:
                        pass

            side = asyncio.create_task(templates())
            await asyncio.gather(*(submitter() for _ in range(20)))
            done.set()
            await side
        return results

    # /healthz from its own thread and connection, so the submitters' event loop does not delay the probe
    health: list[float] = []
    health_status: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=stack.base, timeout=30) as hc:
            while not stop.is_set():
                t0 = time.monotonic()
                status = hc.get("/healthz").status_code
                health.append(time.monotonic() - t0)
                health_status.append(status)
                stop.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        results = asyncio.run(go())
    finally:
        stop.set()
        poller.join(30)
    bad = [(s, t) for s, _, t in results if s != 201]
    assert not bad, bad[:5]
    assert len(results) >= 200 and len(health) >= 5 and set(health_status) == {200}
    assert max(health) < 2.0, f"/healthz took up to {max(health):.2f} s"


def test_unique_name_race_is_one_201_and_409s(stack, tenant):
    h, tpl = tenant
    art = artifact_of(stack, h, tpl)
    name = f"race-{time.monotonic_ns()}"

    async def go():
        async with httpx.AsyncClient(base_url=stack.base, timeout=60, headers=h) as c:
            return await asyncio.gather(
                *(_timed(c, "POST", "/v1/job-templates", json=template_body(art, name)) for _ in range(10))
            )

    results = asyncio.run(go())
    statuses = sorted(s for s, _, _ in results)
    assert statuses == [201] + [409] * 9, results
    assert max(t for _, t, _ in results) < 2.0, results  # no lock wait: a conflict is answered at once


def test_idempotency_key_race_gives_one_job(stack, tenant):
    """10 parallel submissions with one Idempotency-Key and body: all 201, one job, one run."""
    h, tpl = tenant
    body = job_body(tpl, 0)
    key = f"race-{time.monotonic_ns()}"

    async def go():
        async with httpx.AsyncClient(base_url=stack.base, timeout=60, headers=h) as c:
            return await asyncio.gather(
                *(c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}) for _ in range(10))
            )

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    assert len({r.json()["job_id"] for r in answers}) == 1
    assert len({r.json()["run_id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 9


@pytest.mark.parametrize(
    "kind,over,needle",
    [
        ("job", {"type": "RESCHEDULABLE", "latest_finish": 3650}, "max_window_days"),
        ("job", {"type": "ONE_TIME", "intended_time": 3650}, "max_schedule_ahead_days"),
        (
            "job",
            {"type": "RESCHEDULABLE", "earliest_start": 120, "latest_finish": 121},
            "max_schedule_ahead_days",
        ),
        ("job", {"type": "ONE_TIME", "intended_time": "9999-12-31T23:00:00Z"}, "max_schedule_ahead_days"),
        ("job", {"type": "RESCHEDULABLE", "latest_finish": "9999-12-31T23:59:59-12:00"}, "max_window_days"),
        ("preview", {"latest_finish": 40}, "max_window_days"),
        (
            "preview",
            {"earliest_start": "9999-12-30T00:00:00Z", "latest_finish": "9999-12-31T00:00:00Z"},
            "max_schedule_ahead_days",
        ),
        (
            "preview",
            {"earliest_start": "0001-01-01T00:00:00+00:00", "latest_finish": "0001-01-02T00:00:00Z"},
            "max_window_days",
        ),
    ],
)
def test_date_limits_are_422_naming_the_limit(stack, tenant, kind, over, needle):
    h, tpl = tenant
    now = datetime.now(UTC)

    def at(v):
        return (now + timedelta(days=v)).isoformat() if isinstance(v, int) else v

    if kind == "job":
        body = {"job_template_id": tpl, "risk_mode": "NEUTRAL", "type": over["type"]}
        if over["type"] == "ONE_TIME":
            body["intended_time"] = at(over["intended_time"])
        else:
            body["earliest_start"] = at(over.get("earliest_start", 0))
            body["latest_finish"] = at(over["latest_finish"])
        cid = stack.http.get("/v1/clients", headers=h).json()["items"][0]["id"]
        before = count(stack.settings, Job, client_id=cid)
        r = stack.http.post("/v1/jobs", json=body, headers=h)
    else:
        body = {"job_template_id": tpl, "earliest_start": at(over.get("earliest_start", 0))}
        body["latest_finish"] = at(over["latest_finish"])
        r = stack.http.post("/v1/schedules/preview", json=body, headers=h)
    problem = is_problem(r, 422)
    assert needle in problem["detail"] and "ORCH_" + needle.upper() in problem["detail"], problem
    if kind == "job":
        assert count(stack.settings, Job, client_id=cid) == before  # nothing stored


def test_limits_at_the_edge_are_accepted(stack, tenant):
    h, tpl = tenant
    now = datetime.now(UTC)
    body = {
        "job_template_id": tpl,
        "type": "RESCHEDULABLE",
        "earliest_start": (now + timedelta(days=89)).isoformat(),
        "latest_finish": (now + timedelta(days=89 + 30)).isoformat(),
        "risk_mode": "NEUTRAL",
    }
    r = stack.http.post("/v1/jobs", json=body, headers=h)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/job-templates", "/v1/schedules/preview"])
def test_chunked_oversize_body_is_413(stack, tenant, path):
    h, _ = tenant
    chunk = b"[" + b"1," * 32 * 1024  # 64 KiB of a never-ending JSON array

    def body():
        for _ in range(40):  # 2.5 MiB, no Content-Length: Transfer-Encoding chunked
            yield chunk

    r = stack.http.post(path, content=body(), headers={**h, "content-type": "application/json"})
    assert "content-length" not in r.request.headers
    is_problem(r, 413)
    # a small chunked body goes through to validation
    r = stack.http.post(path, content=iter([b"{}"]), headers={**h, "content-type": "application/json"})
    is_problem(r, 422)


def test_lock_held_elsewhere_is_503_with_retry_after(api_settings, tmp_path):
    """A row/DB lock held by another connection beyond the lock timeout: 503 + Retry-After, not 500."""
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, text

    from api.main import create_app
    from core.db import normalise_url
    from tests.support.common import ADMIN_KEY, new_client

    settings = api_settings.model_copy(update={"db_lock_timeout_sec": 1.0, "sqlite_busy_timeout_sec": 1.0})
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        cid, h = new_client(api, "locked")
        eng = create_engine(normalise_url(settings.db_url))
        with eng.connect() as holder:
            if settings.db_url.startswith("sqlite"):
                holder.exec_driver_sql("BEGIN IMMEDIATE")  # the SQLite write lock
                holder.exec_driver_sql("UPDATE clients SET name = 'x' WHERE id = ?", (cid,))
            else:
                holder.execute(text("SELECT id FROM clients WHERE id = :id FOR UPDATE"), {"id": cid})
            t0 = time.monotonic()
            r = api.patch(f"/v1/clients/{cid}", json={"name": "renamed"}, headers={"X-API-Key": ADMIN_KEY})
            took = time.monotonic() - t0
            holder.rollback()
        eng.dispose()
        body = is_problem(r, 503)
        assert r.headers["retry-after"] == str(settings.db_retry_after_sec), body
        assert took < 10, took
        assert api.get(f"/v1/clients/{cid}", headers=h).json()["name"] == "locked"  # nothing was changed


def test_sessions_carry_the_timeouts(api_settings):
    """PostgreSQL sessions get lock/statement/idle timeouts (and keep the URL's own options, here the
    test schema's search_path); SQLite connections get WAL and the busy timeout."""
    from sqlalchemy import text

    from core.db import Database

    settings = api_settings.model_copy(
        update={"db_lock_timeout_sec": 4, "db_statement_timeout_sec": 25, "sqlite_busy_timeout_sec": 7}
    )
    db = Database(settings)
    try:
        with db.session() as s:
            if settings.db_url.startswith("sqlite"):
                assert s.execute(text("PRAGMA busy_timeout")).scalar() == 7000
                assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            else:
                assert s.execute(text("SHOW lock_timeout")).scalar() == "4s"
                assert s.execute(text("SHOW statement_timeout")).scalar() == "25s"
                assert s.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "1min"
                schema = settings.db_url.rsplit("%3D", 1)[1]
                assert schema in s.execute(text("SHOW search_path")).scalar()
    finally:
        db.dispose()


def test_same_template_patches_mixed_with_writes_keep_versions_whole_and_healthz_quick(stack, tenant):
    """Issue 19's writes under contention (SQLite and PostgreSQL, a real API process): 12 PATCHes of ONE
    template, mixed with reruns, webhook creations and submissions, with /healthz polled from another
    thread. No 5xx; each PATCH is a new version or a 409 to retry; the versions stay 1..N with no gap and
    no copy; /healthz answers 200 within 2 s throughout (no handler waits on the DB on the event loop)."""
    h, base_tpl = tenant
    art = artifact_of(stack, h, base_tpl)
    tpl = stack.http.post("/v1/job-templates", json=template_body(art, f"contended-{time.monotonic_ns()}"),
                          headers=h).json()["id"]  # fmt: skip
    first = stack.http.post("/v1/jobs", json=job_body(tpl, 0), headers=h)
    assert first.status_code == 201, first.text
    run_id = first.json()["run_id"]

    async def go():
        async with httpx.AsyncClient(base_url=stack.base, timeout=60, headers=h) as c:
            tasks = [
                _timed(c, "PATCH", f"/v1/job-templates/{tpl}", json={"expected_runtime_sec": 700 + i})
                for i in range(12)
            ]
            tasks += [_timed(c, "POST", f"/v1/runs/{run_id}/rerun") for _ in range(4)]
            tasks += [
                _timed(c, "POST", "/v1/webhooks", json={"url": f"http://127.0.0.1:9/hook-{i}"})
                for i in range(4)
            ]
            tasks += [_timed(c, "POST", "/v1/jobs", json=job_body(tpl, i)) for i in range(1, 9)]
            return await asyncio.gather(*tasks)

    health: list[tuple[int, float]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=stack.base, timeout=30) as hc:
            while not stop.is_set():
                t0 = time.monotonic()
                health.append((hc.get("/healthz").status_code, time.monotonic() - t0))
                stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        results = asyncio.run(go())
    finally:
        stop.set()
        poller.join(30)
    assert not [r for r in results if r[0] >= 500], results
    patches = results[:12]
    assert {s for s, _, _ in patches} <= {200, 409}, patches
    assert all(s == 201 for s, _, _ in results[12:]), results[12:]
    versions = stack.http.get(f"/v1/job-templates/{tpl}/versions", headers=h).json()
    numbers = sorted(v["version"] for v in versions)
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) == 1 + sum(s == 200 for s, _, _ in patches), (numbers, patches)
    current = stack.http.get(f"/v1/job-templates/{tpl}", headers=h).json()
    assert current["version"] == numbers[-1]
    assert health and {s for s, _ in health} == {200}
    assert max(t for _, t in health) < 2.0, max(t for _, t in health)
