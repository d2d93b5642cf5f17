"""Issue 21: a suspended client's recurring jobs stop firing. Suspension pauses their Schedules (and
reactivation resumes only those the suspension paused); the admin key lists, reads and pauses any client's
recurring jobs; a firing of a suspended client's recurring job makes no run; a client has at most
ORCH_MAX_RECURRING_JOBS_PER_CLIENT recurring jobs. Real app, Temporal dev server (no worker), SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client as TemporalClient

from api.main import create_app
from core.db import Database
from services.recurring import create_firing_run
from tests.support.api import is_problem, template_body, upload
from tests.support.common import ADMIN_KEY, new_client
from tests.support.zips import make_zip

ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="module")
def susp_settings(api_settings, temporal_dev_server):
    return api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-suspension",
            "max_recurring_jobs_per_client": 3,
        }
    )


@pytest.fixture(scope="module")
def susp_api(susp_settings):
    with TestClient(create_app(susp_settings), raise_server_exceptions=False) as client:
        yield client


def _paused(settings, schedule_id: str) -> bool:
    async def go():
        c = await TemporalClient.connect(settings.temporal_address)
        return (await c.get_schedule_handle(schedule_id).describe()).schedule.state.paused

    return asyncio.run(go())


def _tenant(api) -> tuple[str, dict, str]:
    cid, h = new_client(api)
    art = upload(api, h, make_zip()).json()["artifact_id"]
    tpl = api.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=1800), headers=h)
    assert tpl.status_code == 201, tpl.text
    return cid, h, tpl.json()["id"]


def _create(api, h, tpl, **over) -> dict:
    r = api.post("/v1/recurring-jobs", json={"job_template_id": tpl, "cron": "* * * * *"} | over, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def test_suspension_pauses_the_schedules_and_reactivation_resumes_only_those(susp_api, susp_settings):
    api = susp_api
    cid, h, tpl = _tenant(api)
    a, b = _create(api, h, tpl), _create(api, h, tpl)
    own = _create(api, h, tpl)
    assert (
        api.post(f"/v1/recurring-jobs/{own['id']}/pause", json={"note": "mine"}, headers=h).status_code == 200
    )
    # the limit: 3 recurring jobs, the fourth is refused, naming the setting
    body = is_problem(
        api.post("/v1/recurring-jobs", json={"job_template_id": tpl, "cron": "0 1 * * *"}, headers=h), 409
    )
    assert "ORCH_MAX_RECURRING_JOBS_PER_CLIENT" in body["detail"]

    assert api.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=ADMIN).status_code == 200
    assert _paused(susp_settings, a["schedule_id"]) and _paused(susp_settings, b["schedule_id"])
    is_problem(api.get("/v1/recurring-jobs", headers=h), 403)
    # the admin lists them (by client), reads and pauses/resumes any of them
    listed = api.get(f"/v1/recurring-jobs?client_id={cid}&limit=10", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    rows = {r["id"]: r for r in listed.json()["items"]}
    assert set(rows) == {a["id"], b["id"], own["id"]}
    assert rows[a["id"]]["status"] == "paused" and "suspended" in rows[a["id"]]["status_reason"]
    assert rows[own["id"]]["status_reason"] == "mine"
    assert api.get(f"/v1/recurring-jobs/{a['id']}?next=1", headers=ADMIN).status_code == 200
    held = api.post(f"/v1/recurring-jobs/{b['id']}/pause", json={"note": "admin hold"}, headers=ADMIN)
    assert held.status_code == 200 and held.json()["status_reason"] == "admin hold", held.text
    other_cid, other_h, _ = _tenant(api)  # another client's key sees none of them
    assert api.get(f"/v1/recurring-jobs?client_id={cid}", headers=other_h).json()["items"] == []
    is_problem(api.post(f"/v1/recurring-jobs/{a['id']}/pause", headers=other_h), 404)

    # a firing while suspended makes nothing, even if its Schedule fired anyway
    db = Database(susp_settings)
    try:
        with db.session() as s:
            firing = create_firing_run(s, susp_settings, a["id"], datetime.now(UTC))
        assert not firing.created and "suspended" in (firing.skipped or "")
    finally:
        db.dispose()

    assert api.patch(f"/v1/clients/{cid}", json={"status": "active"}, headers=ADMIN).status_code == 200
    assert not _paused(susp_settings, a["schedule_id"])  # paused by the suspension: resumed
    assert _paused(susp_settings, b["schedule_id"]) and _paused(susp_settings, own["schedule_id"])
    now = {r["id"]: r["status"] for r in api.get("/v1/recurring-jobs", headers=h).json()["items"]}
    assert now == {a["id"]: "active", b["id"]: "paused", own["id"]: "paused"}
