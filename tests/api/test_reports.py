"""The carbon ledger (GET /v1/reports/carbon) on SQLite and PostgreSQL: on random runs, its totals equal
the sum over exactly the runs it covers, the groups add up to the total, JSON and CSV agree; SVG, errors."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import Database
from models.db import Job, Run
from tests.support.api import is_problem
from tests.support.common import new_client

POWER_KW = {"m5.large": 0.0160035, "m5.4xlarge": 0.128255, "c5.xlarge": 0.030191000000000003}
FROM = datetime(2026, 3, 1, tzinfo=UTC)
TO = datetime(2026, 6, 1, tzinfo=UTC)
STATUSES = ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED", "RUNNING", "PENDING"]

grams = st.one_of(st.none(), st.floats(min_value=0, max_value=5e6, allow_nan=False, allow_infinity=False))
run_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "started_at": st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(2026, 2, 20), max_value=datetime(2026, 6, 10), timezones=st.just(UTC)
            ),
        ),
        "fleet": st.sampled_from([*POWER_KW, "zz.unknown"]),
        "template": st.sampled_from(["tpl_a", "tpl_b", "tpl_c"]),
        "recurring": st.sampled_from([None, "rec_x", "rec_y"]),
        "runtime": st.one_of(st.none(), st.floats(min_value=0, max_value=86400 * 3, allow_nan=False)),
        "chosen": grams,
        "earliest": grams,
        "realised": grams,
        "p50": st.one_of(st.none(), st.floats(min_value=1, max_value=86400)),
    }
)


@pytest.fixture(scope="module")
def shared_job(api, api_settings) -> str:
    """One job row the random runs hang on (runs need a job for the foreign key; the ledger ignores it)."""
    cid, _ = new_client(api, "ledger-owner")
    db = Database(api_settings)
    jid = "job_ledger_" + secrets.token_hex(4)
    with db.session() as s:
        s.add(
            Job(
                id=jid,
                client_id=cid,
                job_template_id=_any_template(api),
                type="ONE_TIME",
                risk_mode="NEUTRAL",
                request_hash="x",
            )
        )
    db.dispose()
    return jid


def _any_template(api) -> str:
    from tests.support.api import template_body, upload
    from tests.support.zips import make_zip

    _, h = new_client(api, "ledger-tpl")
    art = upload(api, h, make_zip()).json()["artifact_id"]
    r = api.post("/v1/job-templates", json=template_body(art), headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def insert_runs(api_settings, client_id: str, job_id: str, specs: list[dict]) -> list[Run]:
    db = Database(api_settings)
    rows = []
    with db.session() as s:
        for sp in specs:
            rid = "run_" + secrets.token_hex(8)
            r = Run(
                id=rid,
                job_id=job_id,
                client_id=client_id,
                job_template_id=sp["template"],
                fleet_template_id=sp["fleet"],
                workflow_id=f"run-{rid}",
                status=sp["status"],
                started_at=sp["started_at"],
                runtime_sec=sp["runtime"],
                carbon_chosen_g=sp["chosen"],
                carbon_earliest_g=sp["earliest"],
                carbon_realised_g=sp["realised"],
                plan={"p50_sec": sp["p50"]} if sp["p50"] else None,
                recurring_job_id=sp["recurring"],
            )
            s.add(r)
            rows.append(sp | {"id": rid})
    db.dispose()
    return rows


def oracle(specs: list[dict]) -> dict:
    """The ledger recomputed from the runs by its documented rule (services/reports.py)."""
    total = {"runs": 0, "energy": 0, "chosen": 0, "baseline": 0, "actual_runs": 0}
    for sp in specs:
        if sp["status"] not in ("SUCCEEDED", "FAILED", "TIMED_OUT") or sp["started_at"] is None:
            continue
        if not (FROM <= sp["started_at"] < TO):
            continue
        actual = sp["realised"] is not None
        chosen = sp["realised"] if actual else sp["chosen"]
        base = sp["earliest"] if sp["earliest"] is not None else chosen
        if actual and sp["earliest"] is not None and sp["p50"] and sp["runtime"]:
            base = sp["earliest"] * sp["runtime"] / sp["p50"]
        total["runs"] += 1
        total["energy"] += round(POWER_KW.get(sp["fleet"], 0.0) * (sp["runtime"] or 0.0) / 3600 * 1e6)
        total["chosen"] += round((chosen or 0.0) * 1000)
        total["baseline"] += round((base or 0.0) * 1000)
        total["actual_runs"] += actual
    return total


def mg(x: float) -> int:
    return round(x * 1000)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(run_st, max_size=25), group_by=st.sampled_from(["template", "recurring_job", "month"]))
def test_ledger_adds_up_to_its_runs(api, api_settings, shared_job, specs, group_by):
    cid, h = new_client(api, "ledger")
    insert_runs(api_settings, cid, shared_job, specs)
    q = f"/v1/reports/carbon?from={FROM.isoformat()}&to={TO.isoformat()}&group_by={group_by}"
    q = q.replace("+", "%2B")
    js = api.get(q, headers=h)
    assert js.status_code == 200, js.text
    body = js.json()
    want = oracle(specs)
    t = body["total"]
    assert t["runs"] == want["runs"] and t["runs_with_actuals"] == want["actual_runs"]
    assert round(t["energy_kwh"] * 1e6) == want["energy"]
    assert mg(t["emissions_chosen_g"]) == want["chosen"]
    assert mg(t["emissions_baseline_g"]) == want["baseline"]
    assert mg(t["saving_g"]) == want["baseline"] - want["chosen"]
    assert mg(t["saving_forecast_g"]) + mg(t["saving_actual_g"]) == mg(t["saving_g"])
    # the groups add up exactly to the total
    for field in ("emissions_chosen_g", "emissions_baseline_g", "saving_g", "saving_actual_g"):
        assert sum(mg(r[field]) for r in body["rows"]) == mg(t[field]), field
    assert sum(r["runs"] for r in body["rows"]) == t["runs"]
    assert sum(round(r["energy_kwh"] * 1e6) for r in body["rows"]) == round(t["energy_kwh"] * 1e6)
    # CSV (Accept: text/csv) says the same
    c = api.get(q, headers=h | {"Accept": "text/csv"})
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert len(rows) == len(body["rows"]) + 1 and rows[-1]["key"] == "total"
    for got, exp in zip(rows, [*body["rows"], t], strict=True):
        for k, v in exp.items():
            assert (float(got[k]) if isinstance(v, int | float) else got[k]) == v, (k, got, exp)


def test_svg_chart_and_bad_periods(api):
    _, h = new_client(api, "ledger-svg")
    r = api.get("/v1/reports/carbon?format=svg", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in r.text and "baseline" in r.text
    is_problem(
        api.get("/v1/reports/carbon?from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z", headers=h), 422
    )
    is_problem(api.get("/v1/reports/carbon?from=2026-05-01T00:00:00", headers=h), 422)  # no offset
    is_problem(api.get("/v1/reports/carbon?group_by=planet", headers=h), 422)
    now = datetime.now(UTC)
    empty = api.get(
        "/v1/reports/carbon",
        params={"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()},
        headers=h,
    ).json()
    assert empty["rows"] == [] and empty["total"]["runs"] == 0
