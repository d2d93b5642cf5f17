"""POST /v1/jobs validation, idempotency and Temporal-unavailable behaviour, on SQLite and PostgreSQL.

The `no_worker_api` fixture (conftest) talks to the real Temporal dev server with no worker on its task
queue, so workflows start (and can be described) but never run: exactly what these API-level checks need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.db import Job, Run
from tests.support.api import count, is_problem, setup_template
from tests.support.common import new_client


def iso(dt: datetime) -> str:
    return dt.isoformat()


def one_time(tpl: str, **over) -> dict:
    return {
        "job_template_id": tpl,
        "type": "ONE_TIME",
        "intended_time": iso(datetime.now(UTC) + timedelta(hours=1)),
        "risk_mode": "NEUTRAL",
    } | over


def reschedulable(tpl: str, **over) -> dict:
    now = datetime.now(UTC)
    return {
        "job_template_id": tpl,
        "type": "RESCHEDULABLE",
        "earliest_start": iso(now + timedelta(hours=1)),
        "latest_finish": iso(now + timedelta(hours=25)),
        "risk_mode": "CONSERVATIVE",
        "weights": {"carbon": 0.5, "risk": 0.4, "slack": 0.1},
    } | over


def test_seed_bodies_are_accepted_and_start_workflows(no_worker_api, api_settings):
    import asyncio

    from core.temporal import connect

    cid, h, tpl = setup_template(no_worker_api)
    for body in (one_time(tpl), reschedulable(tpl)):
        r = no_worker_api.post("/v1/jobs", json=body, headers=h)
        assert r.status_code == 201, r.text
        out = r.json()
        assert set(out) == {"job_id", "run_id", "workflow_id", "status"}
        assert out["workflow_id"] == out["run_id"] and out["status"] == "PENDING"

        async def describe(wid=out["workflow_id"]):
            client = await connect(no_worker_api.app.state.services.settings)
            return await client.get_workflow_handle(wid).describe()

        desc = asyncio.run(describe())
        assert desc.task_queue == "no-worker-here"
        assert desc.typed_search_attributes  # OrchClientId etc. set at start
    assert count(api_settings, Job, client_id=cid) == 2


def test_idempotency_key(no_worker_api, api_settings):
    cid, h, tpl = setup_template(no_worker_api)
    body = one_time(tpl)
    first = no_worker_api.post("/v1/jobs", json=body, headers={**h, "Idempotency-Key": "abc"})
    again = no_worker_api.post("/v1/jobs", json=body, headers={**h, "Idempotency-Key": "abc"})
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = no_worker_api.post(
        "/v1/jobs", json=body | {"risk_mode": "AGGRESSIVE"}, headers={**h, "Idempotency-Key": "abc"}
    )
    is_problem(other, 409)
    # keys are per client: another tenant may use the same key
    _, h2, tpl2 = setup_template(no_worker_api)
    assert (
        no_worker_api.post(
            "/v1/jobs", json=one_time(tpl2), headers={**h2, "Idempotency-Key": "abc"}
        ).status_code
        == 201
    )
    assert count(api_settings, Job, client_id=cid) == 1 and count(api_settings, Run, client_id=cid) == 1


def _now(**delta) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


@pytest.mark.parametrize(
    "over,path",
    [
        ({"intended_time": "2026-01-25T12:00:00"}, "intended_time"),  # naive time
        ({"intended_time": None}, "body"),  # missing for ONE_TIME
        ({"risk_mode": "YOLO"}, "risk_mode"),
        ({"type": "SOMETIMES"}, "type"),
        ({"weights": {"carbon": -1, "risk": 0.5, "slack": 0.5}}, "weights"),
        ({"weights": {"carbon": 0, "risk": 0, "slack": 0}}, "weights"),
        ({"args": {"nested": {"x": 1}}}, "args"),
        ({"intended_time": "2020-01-01T00:00:00Z"}, "intended_time"),  # in the past
        ({"job_template_id": "tpl_doesnotexist"}, None),  # 404
    ],
)
def test_one_time_validation(no_worker_api, api_settings, over, path):
    cid, h, tpl = setup_template(no_worker_api)
    r = no_worker_api.post("/v1/jobs", json=one_time(tpl, **over), headers=h)
    body = is_problem(r, 404 if path is None else 422)
    if path and path != "body":
        assert any(e["path"].startswith(path) for e in body["errors"]), body
    assert count(api_settings, Job, client_id=cid) == 0 and count(api_settings, Run, client_id=cid) == 0


@pytest.mark.parametrize(
    "over",
    [
        {"earliest_start": _now(hours=5), "latest_finish": _now(hours=4)},  # reversed window
        {"latest_finish": _now(hours=-1), "earliest_start": _now(hours=-3)},  # in the past
        {"latest_finish": _now(hours=1, minutes=10)},  # shorter than p90 (CONSERVATIVE)
        {"earliest_start": None},
        {"intended_time": _now(hours=1)},  # wrong type's field
    ],
)
def test_reschedulable_validation(no_worker_api, api_settings, over):
    cid, h, tpl = setup_template(no_worker_api)
    body = {k: v for k, v in (reschedulable(tpl) | over).items() if v is not None}
    is_problem(no_worker_api.post("/v1/jobs", json=body, headers=h), 422)
    assert count(api_settings, Job, client_id=cid) == 0


def test_other_tenants_template_is_404(no_worker_api):
    _, _, tpl = setup_template(no_worker_api)
    _, h2 = new_client(no_worker_api)
    is_problem(no_worker_api.post("/v1/jobs", json=one_time(tpl), headers=h2), 404)


def test_temporal_unreachable_is_503_and_leaves_no_rows(api, api_settings):
    """The `api` fixture points at a closed port: nothing may be left behind."""
    cid, h, tpl = setup_template(api)
    r = api.post("/v1/jobs", json=one_time(tpl), headers={**h, "Idempotency-Key": "k1"})
    is_problem(r, 503)
    assert count(api_settings, Job, client_id=cid) == 0 and count(api_settings, Run, client_id=cid) == 0


def test_cancel_finished_and_unknown_runs(no_worker_api, api_settings):
    from sqlalchemy import create_engine, update

    from core.db import normalise_url

    cid, h, tpl = setup_template(no_worker_api)
    out = no_worker_api.post("/v1/jobs", json=one_time(tpl), headers=h).json()
    r = no_worker_api.post(f"/v1/runs/{out['run_id']}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "CANCELLING"
    eng = create_engine(normalise_url(api_settings.db_url))
    with eng.begin() as c:
        c.execute(update(Run).where(Run.id == out["run_id"]).values(status="SUCCEEDED"))
    eng.dispose()
    body = is_problem(no_worker_api.post(f"/v1/runs/{out['run_id']}/cancel", headers=h), 409)
    assert "SUCCEEDED" in body["detail"]
    is_problem(no_worker_api.post("/v1/runs/run_nope/cancel", headers=h), 404)
    _, h2 = new_client(no_worker_api)
    is_problem(no_worker_api.get(f"/v1/runs/{out['run_id']}", headers=h2), 404)
    is_problem(no_worker_api.get(f"/v1/jobs/{out['job_id']}", headers=h2), 404)


def test_metrics_count_requests_plans_and_runs(no_worker_api):
    _, h, tpl = setup_template(no_worker_api)
    now = datetime.now(UTC)
    r = no_worker_api.post(
        "/v1/schedules/preview",
        headers=h,
        json={
            "job_template_id": tpl,
            "earliest_start": iso(now),
            "latest_finish": iso(now + timedelta(hours=9)),
        }
        | {"risk_mode": "NEUTRAL"},
    )
    assert r.status_code == 200, r.text
    assert no_worker_api.post("/v1/jobs", json=reschedulable(tpl), headers=h).status_code == 201
    text = no_worker_api.get("/metrics").text
    assert 'orch_http_requests_total{method="POST",route="/v1/schedules/preview",status="200"}' in text
    plans = [ln for ln in text.splitlines() if ln.startswith("orch_plan_duration_seconds_count")]
    assert plans and float(plans[0].split()[-1]) >= 2
    assert 'orch_runs{status="PENDING"}' in text and "orch_carbon_saved_grams_total" in text


def _preview_body(tpl: str, hours: float = 24, **over) -> dict:
    now = datetime.now(UTC)
    return {
        "job_template_id": tpl,
        "fleet_template_id": "m5.4xlarge",
        "earliest_start": iso(now),
        "latest_finish": iso(now + timedelta(hours=hours)),
        "risk_mode": "NEUTRAL",
    } | over


def test_preview_seed_shape_svg_and_no_side_effects(no_worker_api, api_settings):
    cid, h, tpl = setup_template(no_worker_api, region="eu-west-2")
    before = (count(api_settings, Job, client_id=cid), count(api_settings, Run, client_id=cid))
    r = no_worker_api.post("/v1/schedules/preview", json=_preview_body(tpl), headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"candidates", "chosen", "rationale"} <= set(body)
    for c in [body["chosen"], *body["candidates"]]:
        assert {"proposed_start", "estimated_finish_p50", "estimated_finish_p90", "scores"} <= set(c)
        assert set(c["scores"]) == {"carbon", "risk", "slack"}
        assert 0 <= c["scores"]["risk"] <= 1 and 0 <= c["scores"]["slack"] <= 1
        assert c["scores"]["carbon"] >= -1  # relative to the baseline start: 0 there, -0.12 = 12 % less
        assert c["estimated_gco2e"] > 0
        assert c["saving_sigma_pct"] >= 0 and 0 <= c["prob_saving"] <= 1
        assert c["expected_saving_pct"] == c["saving_vs_earliest_pct"]
    assert body["baseline"]["scores"]["carbon"] == 0 and isinstance(body["skill_gated"], bool)
    assert body["chosen"] == body["candidates"][0]
    assert body["chosen"]["estimated_gco2e"] <= body["baseline"]["estimated_gco2e"]
    assert "NEUTRAL" in body["rationale"]
    assert "not enough runtime history (0 successful runs of the 3 needed)" in body["rationale"]
    svg = no_worker_api.post("/v1/schedules/preview?format=svg", json=_preview_body(tpl), headers=h)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith(("<?xml", "<svg"))
    assert (count(api_settings, Job, client_id=cid), count(api_settings, Run, client_id=cid)) == before


def test_preview_infeasible_window_names_the_numbers(no_worker_api):
    _, h, tpl = setup_template(no_worker_api)  # expected runtime 1800 s -> p90 2700 s
    r = no_worker_api.post(
        "/v1/schedules/preview", json=_preview_body(tpl, hours=0.5, risk_mode="CONSERVATIVE"), headers=h
    )
    body = is_problem(r, 422)
    assert any(ch.isdigit() for ch in body["detail"]), body["detail"]


def test_predictions_from_succeeded_runs(no_worker_api, api_settings):
    from sqlalchemy import create_engine

    from core.db import normalise_url
    from models.db import new_id

    cid, h, tpl = setup_template(no_worker_api)
    url = f"/v1/predictions/runtime?job_template_id={tpl}&fleet_template_id=m5.4xlarge"
    assert no_worker_api.get(url, headers=h).json() == {"available": False, "notes": "insufficient history"}
    eng = create_engine(normalise_url(api_settings.db_url))
    now = datetime.now(UTC)
    with eng.begin() as c:
        job_id = new_id("job")
        c.execute(
            Job.__table__.insert().values(
                id=job_id,
                client_id=cid,
                job_template_id=tpl,
                type="ONE_TIME",
                intended_time=now,
                risk_mode="NEUTRAL",
                weights={},
                args={},
                request_hash="x",
                created_at=now,
            )
        )
        for i, sec in enumerate([1700, 1800, 1900, 2000, 1750, 1850]):
            rid = new_id("run")
            c.execute(
                Run.__table__.insert().values(
                    id=rid,
                    job_id=job_id,
                    client_id=cid,
                    job_template_id=tpl,
                    fleet_template_id="m5.4xlarge",
                    workflow_id=f"run-{rid}",
                    status="SUCCEEDED",
                    runtime_sec=sec,
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                    finished_at=now - timedelta(hours=i),
                )
            )
    eng.dispose()
    got = no_worker_api.get(url, headers=h).json()
    assert got["available"] is True and got["sample_size"] == 6
    assert 1700 <= got["p50_sec"] <= 2000 and got["p90_sec"] >= got["p50_sec"]
    assert 0 < got["confidence"] <= 1
    # another fleet template has no history; another tenant cannot ask
    assert no_worker_api.get(url.replace("m5.4xlarge", "m5.large"), headers=h).json()["available"] is False
    _, h2 = new_client(no_worker_api)
    is_problem(no_worker_api.get(url, headers=h2), 404)
