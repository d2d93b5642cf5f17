"""Issue 21: a pause or resume racing with PATCHes of the same recurring job is never lost: after the
requests, Temporal's Schedule and the API agree, and the state is the one the pause/resume answered. Real
app in-process, real Temporal dev server (no worker), SQLite and PostgreSQL; requests from threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client as TemporalClient

from api.main import create_app
from tests.support.api import template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

TRIALS = 3
PATCHES = 4


@pytest.fixture(scope="module")
def race_settings(api_settings, temporal_dev_server):
    return api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-races",
        }
    )


@pytest.fixture(scope="module")
def race_api(race_settings):
    with TestClient(create_app(race_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def other_api(race_settings):
    """A second app (its own engine and locks): an API process of its own, as far as the race goes."""
    with TestClient(create_app(race_settings), raise_server_exceptions=False) as client:
        yield client


def _paused_in_temporal(settings, schedule_id: str) -> bool:
    async def go():
        c = await TemporalClient.connect(settings.temporal_address)
        return (await c.get_schedule_handle(schedule_id).describe()).schedule.state.paused

    return asyncio.run(go())


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_pause_or_resume_racing_with_patches_is_never_lost(race_api, other_api, race_settings, action):
    _, h = new_client(race_api)
    art = upload(race_api, h, make_zip()).json()["artifact_id"]
    tpl = race_api.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=1800), headers=h)
    body = {"job_template_id": tpl.json()["id"], "cron": "0 1 * * *", "margin_after": "PT3H"}
    lost = []
    with ThreadPoolExecutor(PATCHES + 1) as pool:
        for trial in range(TRIALS):
            created = race_api.post(
                "/v1/recurring-jobs", json=body | {"paused": action == "resume"}, headers=h
            )
            assert created.status_code == 201, created.text
            rid, sid = created.json()["id"], created.json()["schedule_id"]
            patches = [
                pool.submit(
                    race_api.patch,
                    f"/v1/recurring-jobs/{rid}",
                    json={"margin_after": f"PT{2 + (i + trial) % 3}H"},
                    headers=h,
                )
                for i in range(PATCHES // 2)
            ]
            change = pool.submit(race_api.post, f"/v1/recurring-jobs/{rid}/{action}", headers=h)
            patches += [
                pool.submit(
                    other_api.patch, f"/v1/recurring-jobs/{rid}", json={"margin_before": "PT1H"}, headers=h
                )
                for _ in range(PATCHES - PATCHES // 2)
            ]
            answered = change.result()
            assert answered.status_code == 200, answered.text
            want_paused = action == "pause"
            assert answered.json()["status"] == ("paused" if want_paused else "active")
            for f in patches:
                assert f.result().status_code == 200, f.result().text
            listed = race_api.get(
                f"/v1/recurring-jobs?limit=100&status={answered.json()['status']}", headers=h
            )
            in_api = rid in {r["id"] for r in listed.json()["items"]}  # the stored state (no repair)
            in_temporal = _paused_in_temporal(race_settings, sid) == want_paused
            if not (in_api and in_temporal):
                lost.append((trial, in_api, in_temporal))
    assert lost == []
