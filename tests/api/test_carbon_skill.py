"""Measured forecast skill (issue 18) on SQLite and PostgreSQL: a finished run's live forecast (from its
plan's audit record) is paired hour by hour with the measured intensity, idempotently and only for the
provider that measured it; GET /v1/carbon/skill reports the pairs; planning puts the measured sigma on a
live series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from carbon import SeriesSource
from core.db import Database
from models.db import ForecastPair, Job, JobTemplate, Run, new_id
from models.workflow import workflow_id_for
from scheduling.carbon import CarbonSeries
from services.plan_audit import store_record
from services.skill import calibrated, prior_for, record_pairs
from tests.support.api import is_problem, setup_template
from tests.support.common import new_client

T0 = datetime(2026, 11, 2, tzinfo=UTC)
ZONE = "ZZ-" + new_id("z")[-6:].upper()  # a zone of this test only: the table is shared by the module


@pytest.fixture(scope="module")
def db(api_settings):
    d = Database(api_settings)
    yield d
    with d.session() as s:
        s.execute(delete(ForecastPair).where(ForecastPair.zone == ZONE))
    d.dispose()


@pytest.fixture(scope="module")
def seeded(db) -> None:
    """200 earlier pairs at 1.5 h lead: errors of 2 % (the prior says 5.45 %)."""
    rng = np.random.default_rng(5)
    with db.session() as s:
        for i in range(200):
            f = 300.0
            a = f * (1 + 0.02 * rng.standard_normal())
            s.add(ForecastPair(provider="electricitymaps", zone=ZONE, signal="average", run_id=f"run_x{i}",
                               at=T0 - timedelta(hours=i), lead_h=1.5, forecast=f, actual=a,
                               stated_sigma=f * 0.055))  # fmt: skip


def _run_with_record(db, cid, tpl, *, provider="electricitymaps", live=True, zone=ZONE) -> str:
    """A run whose plan record says: eu-central-1's series came from ``provider`` (zone ZONE), issued at
    T0, live until T0 + 6 h, 15-min values 200 g/kWh with a stated sigma of 10 %."""
    n = 6 * 4
    record = {
        "format": 1,
        "regions": [
            {
                "region": "eu-central-1",
                "provider": provider,
                "zone": zone,
                "signal": "average",
                "live": live,
                "issued_at": T0.isoformat(),
                "live_until": (T0 + timedelta(hours=6)).isoformat(),
                "series": {
                    "start": T0.isoformat(),
                    "step_sec": 900.0,
                    "values": [200.0] * n,
                    "sigma": [20.0] * n,
                },
            }
        ],
    }
    with db.session() as s:
        job = Job(id=new_id("job"), client_id=cid, job_template_id=tpl, type="ONE_TIME", intended_time=T0,
                  risk_mode="NEUTRAL", request_hash="x")  # fmt: skip
        s.add(job)
        s.flush()
        run_id = new_id("run")
        run = Run(id=run_id, job_id=job.id, client_id=cid, job_template_id=tpl, fleet_template_id="m5.large",
                  workflow_id=workflow_id_for(run_id), status="SUCCEEDED")  # fmt: skip
        s.add(run)
        s.flush()
        audit_id = store_record(s, run, record, T0)
        run.plan = {"audit_id": audit_id}
    return run_id


def test_pairs_are_recorded_once_per_hour_and_only_from_the_same_provider(api, db):
    cid, h, tpl = setup_template(api)
    run_id = _run_with_record(db, cid, tpl)
    measured = CarbonSeries(
        T0, timedelta(hours=1), np.array([210.0, 230.0, 180.0, 250.0, 200.0, 190.0, 300.0])
    )
    with db.session() as s:
        run = s.get_one(Run, run_id)
        # another provider measured it: no pair (a different signal or method)
        assert record_pairs(s, run, "eu-central-1", measured, "watttime", T0, T0 + timedelta(hours=3)) == 0
        # the hour before the forecast was issued would be a negative lead; hours past live_until are spliced
        n = record_pairs(s, run, "eu-central-1", measured, "electricitymaps", T0 - timedelta(hours=1),
                         T0 + timedelta(hours=7))  # fmt: skip
        assert n == 6
        assert (
            record_pairs(s, run, "eu-central-1", measured, "electricitymaps", T0, T0 + timedelta(hours=7))
            == 0
        )
        rows = s.execute(
            select(ForecastPair.at, ForecastPair.lead_h, ForecastPair.forecast, ForecastPair.actual,
                   ForecastPair.stated_sigma).where(ForecastPair.run_id == run_id).order_by(ForecastPair.at)
        ).all()  # fmt: skip
    assert [r.lead_h for r in rows] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    assert [r.actual for r in rows] == [210.0, 230.0, 180.0, 250.0, 200.0, 190.0]
    assert all(r.forecast == 200.0 and r.stated_sigma == 20.0 for r in rows)
    # a run whose forecast was not live (embedded climatology) gives no pair
    run2 = _run_with_record(db, cid, tpl, provider="embedded", live=False)
    with db.session() as s:
        assert (
            record_pairs(
                s, s.get_one(Run, run2), "eu-central-1", measured, "embedded", T0, T0 + timedelta(hours=3)
            )
            == 0
        )


def test_skill_endpoint_and_the_measured_sigma_in_planning(api, api_settings, db, seeded):
    cid, h, tpl = setup_template(api)
    r = api.get(f"/v1/carbon/skill?zone={ZONE}", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "prior" in body["method"]
    [item] = body["items"]
    assert item["provider"] == "electricitymaps" and item["zone"] == ZONE and item["pairs"] >= 200
    first = item["by_lead"][0]
    assert first["lead_from_h"] == 0 and first["lead_to_h"] == 3 and not first["is_prior"]
    assert 1.5 < first["measured_sigma_pct"] < 2.6 and first["sigma_pct"] < first["prior_sigma_pct"]
    assert first["coverage_80"] > 0.95  # the stated 5.5 % interval was far too wide
    assert all(b["is_prior"] and b["pairs"] == 0 for b in item["by_lead"][2:])
    assert item["mae"] > 0 and item["coverage_80"] > 0.95 and not item["is_prior"]
    assert api.get(f"/v1/carbon/skill?zone={ZONE}&provider=watttime", headers=h).json()["items"] == []
    is_problem(api.get("/v1/carbon/skill"), 401)
    assert "/v1/carbon/skill" in api.get("/openapi.json").json()["paths"]

    # planning: a live electricitymaps series for ZONE gets the measured ~2 % at 0-3 h lead, the prior beyond
    series = CarbonSeries(T0, timedelta(minutes=15), np.full(48, 300.0), np.full(48, 300.0 * 0.055))
    src = SeriesSource(
        "electricitymaps", ZONE, "average", live=True, issued_at=T0, live_until=T0 + timedelta(hours=12)
    )
    with db.session() as s:
        out, cal = calibrated(s, api_settings, series, src)
        assert cal is not None and not cal.is_prior and cal.pairs >= 200
        assert np.all(out.sigma[: 3 * 4] < 300 * 0.03)  # 0-3 h: measured
        lead = (np.arange(48) * 900 + 450) / 3600.0
        prior = prior_for(api_settings, "electricitymaps")(lead) * 300.0
        assert np.allclose(out.sigma[3 * 4 :], prior[3 * 4 :])  # 3-12 h: too few pairs, the provider's prior
        embedded = SeriesSource("embedded", ZONE, "average")
        assert calibrated(s, api_settings, series, embedded) == (series, None)
        n = s.scalar(select(func.count()).select_from(ForecastPair).where(ForecastPair.zone == ZONE))
        assert n >= 200


def test_orch_carbon_skill_prints_the_table_and_json(api, db, seeded, monkeypatch):
    """``orch carbon skill`` over the same API (the CLI's httpx client is the in-process app)."""
    import json

    from typer.testing import CliRunner

    import cli.carbon
    from cli import app

    _, h = new_client(api, "skill-cli")
    monkeypatch.setenv("ORCH_API_KEY", h["X-API-Key"])

    class InProcessApi(cli.client.Api):
        def __init__(self) -> None:
            super().__init__()
            self.http = _Keyed()

    class _Keyed:  # the shared TestClient, with this client's key on each request (its defaults untouched)
        def request(self, method, path, **kw):
            return api.request(method, path, headers=h, **kw)

    monkeypatch.setattr(cli.carbon, "Api", InProcessApi)
    runner = CliRunner()
    res = runner.invoke(app, ["carbon", "skill", "--zone", ZONE, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [i["zone"] for i in data["items"]] == [ZONE] and data["items"][0]["pairs"] >= 200
    res = runner.invoke(app, ["carbon", "skill", "--zone", ZONE])
    assert res.exit_code == 0, res.output
    assert f"electricitymaps {ZONE}" in res.output and "(prior)" in res.output and "0-3 h" in res.output
    res = runner.invoke(app, ["carbon", "skill", "--zone", "NO-SUCH-ZONE"])
    assert res.exit_code == 0 and "no forecast/measured pairs yet" in res.output


def test_the_actuals_task_pairs_the_run_and_baseline_hours_it_measured(api, api_settings, db):
    """record_run_actuals (the maintenance task's step) measures the run and its baseline with Electricity
    Maps (MockTransport) and pairs the plan's live Electricity Maps forecast with it, hour by hour."""
    import httpx

    from services.actuals import record_run_actuals
    from tests.support.carbon import Recorder, client

    cid, h, tpl = setup_template(api)
    run_id = _run_with_record(db, cid, tpl, zone="DE")
    pts = [{"carbonIntensity": 300 + i, "datetime": (T0 + timedelta(hours=i)).isoformat()} for i in range(12)]
    rec = Recorder(
        {("GET", "/v3/carbon-intensity/past-range"): lambda r: httpx.Response(200, json={"data": pts})}
    )
    settings = api_settings.model_copy(
        update={"carbon_provider": "electricitymaps", "electricitymaps_api_key": "k"}
    )
    try:
        with db.session() as s, client(rec) as http:
            run = s.get_one(Run, run_id)
            job = s.get_one(Job, run.job_id)
            job.type, job.intended_time, job.earliest_start = "RESCHEDULABLE", None, T0 + timedelta(hours=1)
            run.region, run.created_at = "eu-central-1", T0
            s.get_one(JobTemplate, tpl).region = "eu-central-1"  # home: the baseline is measured there too
            run.started_at, run.finished_at = T0 + timedelta(hours=2), T0 + timedelta(hours=3, minutes=30)
            assert record_run_actuals(s, settings, run, T0 + timedelta(days=1), http=http) == "recorded"
        with db.session() as s:
            rows = s.execute(
                select(ForecastPair.at, ForecastPair.lead_h, ForecastPair.actual)
                .where(ForecastPair.run_id == run_id)
                .order_by(ForecastPair.at)
            ).all()
        # run [02:00, 03:30] -> the 02:00 and 03:00 hours; baseline [01:00, 02:30] adds 01:00
        assert [(r.lead_h, r.actual) for r in rows] == [(1.5, 301.0), (2.5, 302.0), (3.5, 303.0)]
    finally:
        with db.session() as s:
            s.execute(delete(ForecastPair).where(ForecastPair.run_id == run_id))
