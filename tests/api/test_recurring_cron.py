"""Issue 21: the API reads a cron as Temporal does. The next nominal times of GET come from the Schedule's
own matching times (Temporal's cron, DST gaps and repeats), and cron syntax the two read differently (`#`,
`L`, `W`, `?`) is a 422 naming `cron`, never a 503. Real app, Temporal dev server (no worker), SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import Client as TemporalClient

from api.main import create_app
from tests.support.api import is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip


@pytest.fixture(scope="module")
def cron_settings(api_settings, temporal_dev_server):
    return api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-cron",
        }
    )


@pytest.fixture(scope="module")
def cron_api(cron_settings):
    with TestClient(create_app(cron_settings), raise_server_exceptions=False) as client:
        _, h = new_client(client)
        art = upload(client, h, make_zip()).json()["artifact_id"]
        tpl = client.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=600), headers=h)
        assert tpl.status_code == 201, tpl.text
        yield client, h, tpl.json()["id"]


def _temporal_fires(settings, schedule_id: str, start: datetime, end: datetime) -> list[datetime]:
    async def go():
        c = await TemporalClient.connect(settings.temporal_address)
        lo, hi = Timestamp(), Timestamp()
        lo.FromDatetime(start)
        hi.FromDatetime(end)
        resp = await c.workflow_service.list_schedule_matching_times(
            ListScheduleMatchingTimesRequest(
                namespace="default", schedule_id=schedule_id, start_time=lo, end_time=hi
            )
        )
        return [t.ToDatetime(tzinfo=UTC) for t in resp.start_time]

    return asyncio.run(go())


@pytest.mark.parametrize("cron", ["0 1 * * 5#2", "0 1 L * *", "0 1 ? * *", "0 1 15W * *", "5#2 * * * *"])
def test_cron_syntax_temporal_reads_differently_is_422(cron_api, cron):
    api, h, tpl = cron_api
    r = api.post("/v1/recurring-jobs", json={"job_template_id": tpl, "cron": cron}, headers=h)
    body = is_problem(r, 422)
    assert [e["path"] for e in body["errors"]] == ["cron"], body


@pytest.mark.parametrize(
    "start_at",
    [
        datetime(2027, 3, 26, tzinfo=UTC),  # 2027-03-28: 01:00-02:00 does not exist in London
        datetime(2027, 10, 29, tzinfo=UTC),  # 2027-10-31: 01:00-02:00 happens twice
    ],
)
def test_next_times_are_temporals_across_dst_in_london(cron_api, cron_settings, start_at):
    api, h, tpl = cron_api
    body = {
        "job_template_id": tpl,
        "cron": "30 1 * * *",
        "time_zone": "Europe/London",
        "margin_after": "PT1H",
        "start_at": start_at.isoformat(),
    }
    created = api.post("/v1/recurring-jobs", json=body, headers=h)
    assert created.status_code == 201, created.text
    rec = created.json()
    got = api.get(f"/v1/recurring-jobs/{rec['id']}?next=5", headers=h)
    assert got.status_code == 200, got.text
    shown = [datetime.fromisoformat(n["nominal_time"]) for n in got.json()["next"]]
    fires = _temporal_fires(cron_settings, rec["schedule_id"], start_at, start_at + timedelta(days=6))
    assert shown == fires[:5], (shown, fires)
