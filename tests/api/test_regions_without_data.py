"""Issue 21: AWS regions the settings accept but that have no packaged carbon data (no hourly series, no CCF
factor) are planned with a named flat fallback (the CCF average), never a 500: preview, a RESCHEDULABLE
submit and a recurring job's GET, on the real app (no worker on the task queue, so nothing runs). A region
with only the fallback is never a region to move to. And an unexpected error is a problem+json 500 that does
not escape the app (uvicorn closes a keep-alive connection when the exception escapes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from carbon.embedded import embedded_series, is_fallback_region
from scheduling.carbon import ccf_average_factor
from tests.support.api import AWS_BODY, is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

NO_DATA = [
    "me-central-1",
    "il-central-1",
    "eu-central-2",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-east-2",
    "ca-west-1",
    "mx-central-1",
]


def _window(hours: int = 12) -> tuple[datetime, datetime]:
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return start, start + timedelta(hours=hours)


def _template(api, region: str, allowed: list[str] | None = None) -> tuple[dict, str]:
    cid, h = new_client(api, "no-data")
    aws = AWS_BODY | {"region_default": region} | ({"allowed_regions": allowed} if allowed else {})
    r = api.put(f"/v1/clients/{cid}/aws", json=aws, headers=h)
    assert r.status_code == 200, r.text
    art = upload(api, h, make_zip()).json()["artifact_id"]
    t = api.post("/v1/job-templates", json=template_body(art, expected_runtime_sec=3600), headers=h)
    assert t.status_code == 201, t.text
    return h, t.json()["id"]


def test_every_accepted_region_has_a_named_series():
    start, end = _window()
    for region in NO_DATA:
        assert is_fallback_region(region), region
        series, note = embedded_series(region, start, end)
        assert (series.values == ccf_average_factor()).all()
        assert "no carbon data" in note and "no time-shifting" in note
    assert not is_fallback_region("eu-west-2") and not is_fallback_region("mars-north-1")


def test_preview_submit_and_recurring_get_plan_with_the_fallback(no_worker_api):
    api = no_worker_api
    start, end = _window()
    h, tpl = _template(api, NO_DATA[0], allowed=NO_DATA)
    window = {"job_template_id": tpl, "earliest_start": start.isoformat(), "latest_finish": end.isoformat()}
    for region in NO_DATA:
        p = api.post("/v1/schedules/preview", json=window | {"regions": [region]}, headers=h)
        assert p.status_code == 200, (region, p.text)
        assert p.json()["chosen"]["region"] == region
        assert "no carbon data" in p.json()["rationale"], p.json()["rationale"]
    svg = api.post("/v1/schedules/preview?format=svg", json=window, headers=h)
    assert svg.status_code == 200, svg.text
    # a RESCHEDULABLE submit plans at once; a recurring job's GET previews its next start
    job = {"job_template_id": tpl, "type": "RESCHEDULABLE", "risk_mode": "NEUTRAL"}
    r = api.post(
        "/v1/jobs",
        json=job | {"earliest_start": start.isoformat(), "latest_finish": end.isoformat()},
        headers=h,
    )
    assert r.status_code in (201, 202), r.text
    rec = {"job_template_id": tpl, "cron": "0 1 * * *", "time_zone": "UTC", "margin_after": "PT6H"}
    c = api.post("/v1/recurring-jobs", json=rec, headers=h)
    assert c.status_code == 201, c.text
    g = api.get(f"/v1/recurring-jobs/{c.json()['id']}?next=2", headers=h)
    assert g.status_code == 200, g.text


def test_a_region_without_data_is_never_a_region_to_move_to(api):
    h, tpl = _template(api, "us-east-1", allowed=["us-east-1", "ca-west-1"])
    start, end = _window()
    body = {
        "job_template_id": tpl,
        "earliest_start": start.isoformat(),
        "latest_finish": end.isoformat(),
        "weights": {"carbon": 1.0, "risk": 0.0, "slack": 0.0},
    }
    p = api.post("/v1/schedules/preview", json=body, headers=h)
    assert p.status_code == 200, p.text
    # the fallback (~390 g/kWh) is below us-east-1's CCF 454.5: without the rule the run would move there
    assert p.json()["chosen"]["region"] == "us-east-1"
    assert "no carbon data for ca-west-1" in p.json()["rationale"]


@pytest.mark.parametrize("path", ["/explode"])
def test_an_unexpected_error_is_a_problem_500_that_does_not_escape_the_app(api_settings, path):
    app = create_app(api_settings)

    @app.get(path, include_in_schema=False)
    def boom() -> dict:
        raise RuntimeError("secret detail")

    # raise_server_exceptions=True: an exception escaping the ASGI app (which makes uvicorn close the
    # keep-alive connection after the 500) fails the request here
    with TestClient(app) as client:
        r = client.get(path)
        body = is_problem(r, 500)
        assert "secret detail" not in r.text and body["title"] == "Internal error"
        assert client.get("/healthz").status_code == 200
