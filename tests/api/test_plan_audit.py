"""The plan audit trail (issue 18) on SQLite and PostgreSQL: the plan activity keeps what each plan was
decided from, GET /v1/runs/{id}/plan returns it (tenancy like GET /v1/runs/{id}; 409 without a record), and
its figures recompute the saving the run stores; re-plans the run did not follow do not pile up."""

from __future__ import annotations

import json
import math
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from activities.run_activities import RunActivities
from core.db import Database
from models.db import Job, PlanAudit, Run, new_id, utcnow
from models.domain import RunStatus
from models.workflow import PlanRequest, RunUpdate, workflow_id_for
from tests.support.api import AWS_BODY, is_problem, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

HOME, PARIS, LONDON = "eu-central-1", "eu-west-3", "eu-west-2"


@pytest.fixture(scope="module")
def db(api_settings):
    d = Database(api_settings)
    yield d
    d.dispose()


@pytest.fixture(scope="module")
def acts(api_settings, db) -> RunActivities:
    return RunActivities(api_settings, db, driver=None)  # type: ignore[arg-type] - planning needs no driver


@pytest.fixture(scope="module")
def tenant(api):
    cid, h = new_client(api, "audit-owner")
    r = api.put(
        f"/v1/clients/{cid}/aws",
        json=AWS_BODY | {"region_default": HOME, "allowed_regions": [HOME, PARIS, LONDON]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    art = upload(api, h, make_zip()).json()["artifact_id"]
    t = api.post(
        "/v1/job-templates",
        json=template_body(art, expected_runtime_sec=3600, fleet_template_id="m5.large"),
        headers=h,
    )
    assert t.status_code == 201, t.text
    return cid, h, t.json()["id"]


def _job_and_run(db, cid, tpl, *, earliest, hours, risk_mode="NEUTRAL", weights=None, regions=None,
                 status="PENDING") -> str:  # fmt: skip
    with db.session() as s:
        job = Job(
            id=new_id("job"),
            client_id=cid,
            job_template_id=tpl,
            type="RESCHEDULABLE",
            earliest_start=earliest,
            latest_finish=earliest + timedelta(hours=hours),
            risk_mode=risk_mode,
            weights=weights or {"carbon": 0.5, "risk": 0.4, "slack": 0.1},
            args={},
            request_hash="0" * 64,
            regions=regions,
        )
        s.add(job)
        s.flush()
        run_id = new_id("run")
        s.add(
            Run(
                id=run_id,
                job_id=job.id,
                client_id=cid,
                job_template_id=tpl,
                fleet_template_id="m5.large",
                workflow_id=workflow_id_for(run_id),
                status=status,
            )
        )
    return run_id


def _plan_and_apply(acts, run_id, now, current_start=None, apply=True):
    """What JobRunWorkflow does: the plan activity, then update_run with the plan it follows."""
    res = acts._plan(PlanRequest(run_id=run_id, not_before=now, current_start=current_start))
    if apply:
        acts._update(
            RunUpdate(
                run_id=run_id,
                status=RunStatus.SCHEDULED,
                status_reason=res.rationale,
                planned_start=res.start,
                plan=res.doc,
                capacity=res.capacity,
                carbon_chosen_g=res.carbon_chosen_g,
                carbon_earliest_g=res.carbon_earliest_g,
            )
        )
    return res


def _integral_gh(series: dict, start: datetime, end: datetime) -> float:
    """g/kWh x h of a stored step series over [start, end], interval by interval (no prefix sums)."""
    t0 = datetime.fromisoformat(series["start"])
    step = float(series["step_sec"])
    a = (start - t0).total_seconds()
    b = (end - t0).total_seconds()
    assert a >= -1e-6 and b <= step * len(series["values"]) + 1e-6, "the stored series covers the run"
    total = 0.0
    for i, v in enumerate(series["values"]):
        lo, hi = i * step, (i + 1) * step
        overlap = min(hi, b) - max(lo, a)
        if overlap > 0:
            total += v * overlap
    return total / 3600.0


def _emissions(rec: dict, cand: dict) -> float:
    region = next(r for r in rec["regions"] if r["region"] == cand["region"])
    start = datetime.fromisoformat(cand["start"])
    end = start + timedelta(seconds=rec["runtime"]["p50_sec"])
    return region["power_kw"] * _integral_gh(region["series"], start, end)


def test_the_plan_activity_keeps_an_audit_record_that_the_endpoint_returns(api, admin, acts, db, tenant):
    cid, h, tpl = tenant
    earliest = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    run_id = _job_and_run(
        db, cid, tpl, earliest=earliest, hours=12, weights={"carbon": 1, "risk": 0, "slack": 0}
    )
    # not planned yet: a clear 409, not a 500 or an empty body
    body = is_problem(api.get(f"/v1/runs/{run_id}/plan", headers=h), 409)
    assert "not been planned" in body["detail"]
    now = datetime.now(UTC)
    res = _plan_and_apply(acts, run_id, now)
    run = api.get(f"/v1/runs/{run_id}", headers=h).json()
    assert run["plan"]["audit_id"].startswith("pla_")

    r = api.get(f"/v1/runs/{run_id}/plan", headers=h)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["audit_id"] == run["plan"]["audit_id"] and rec["run_id"] == run_id and rec["kind"] == "plan"
    assert datetime.fromisoformat(rec["decided_at"]) == now
    assert rec["provider"] == "embedded" and rec["signal"] == "average" and rec["home_region"] == HOME
    assert {g["region"] for g in rec["regions"]} == {HOME, PARIS, LONDON}
    for g in rec["regions"]:
        assert g["provider"] == "embedded" and g["zone"] and not g["live"]
        assert len(g["series"]["values"]) == len(g["series"]["sigma"]) >= 12 * 4  # 15-min grid over 12 h
        assert g["power_kw"] > 0
    assert rec["runtime"] == {
        "p50_sec": res.p50_sec,
        "p90_sec": res.p90_sec,
        "source": rec["runtime"]["source"],
    }
    assert "expected_runtime_sec" in rec["runtime"]["source"]
    assert rec["chosen"]["start"] == res.start.isoformat() and rec["chosen"]["region"] == res.region
    assert rec["baseline"]["region"] == HOME and rec["baseline"]["start"] == earliest.isoformat()
    assert rec["candidates"][0] == rec["chosen"] and len(rec["candidates"]) >= 2
    # every candidate carries every figure the planner computed, generically
    assert {
        "emissions_g",
        "saving_vs_earliest_pct",
        "saving_sigma_pct",
        "prob_saving",
        "risk",
        "objective",
    } <= set(rec["candidates"][0])
    assert rec["rule"]["policy"]["min_saving_pct"] == 3.0 and "skill_gated" in rec["rule"]
    assert rec["rationale"] == res.rationale
    assert rec["stored"]["carbon_chosen_g"] == res.carbon_chosen_g
    assert rec["stored"]["carbon_earliest_g"] == res.carbon_earliest_g

    # tenancy: another client's id is a 404 exactly like an unknown id; the admin reads any run
    _, other = new_client(api, "audit-other")
    is_problem(api.get(f"/v1/runs/{run_id}/plan", headers=other), 404)
    is_problem(api.get("/v1/runs/run_doesnotexist/plan", headers=h), 404)
    assert api.get(f"/v1/runs/{run_id}/plan", headers=admin).json()["audit_id"] == rec["audit_id"]
    # documented in OpenAPI
    spec = api.get("/openapi.json").json()
    op = spec["paths"]["/v1/runs/{run_id}/plan"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PlanAuditOut")
    assert "409" in op["responses"]


def test_a_run_planned_before_audit_records_answers_409(api, db, tenant):
    cid, h, tpl = tenant
    run_id = _job_and_run(db, cid, tpl, earliest=datetime.now(UTC) + timedelta(hours=1), hours=4,
                          status="SCHEDULED")  # fmt: skip
    with db.session() as s:
        s.get_one(Run, run_id).plan = {"proposed_start": utcnow().isoformat(), "rationale": "old"}
    body = is_problem(api.get(f"/v1/runs/{run_id}/plan", headers=h), 409)
    assert "planned before plan audit records were kept" in body["detail"]


def test_replans_the_run_did_not_follow_are_replaced_and_followed_ones_kept(api, acts, db, tenant):
    cid, h, tpl = tenant
    earliest = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    run_id = _job_and_run(db, cid, tpl, earliest=earliest, hours=10)
    now = datetime.now(UTC)
    first = _plan_and_apply(acts, run_id, now)
    for k in range(3):  # re-plans the workflow did not follow (the start did not change enough)
        _plan_and_apply(acts, run_id, now + timedelta(minutes=10 * (k + 1)), first.start, apply=False)
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(PlanAudit).where(PlanAudit.run_id == run_id))
    assert n == 2  # the followed plan and the latest candidate re-plan, not one per re-plan
    assert api.get(f"/v1/runs/{run_id}/plan", headers=h).json()["audit_id"] == first.doc["audit_id"]
    second = _plan_and_apply(acts, run_id, now + timedelta(hours=1), first.start)  # followed
    rec = api.get(f"/v1/runs/{run_id}/plan", headers=h).json()
    assert rec["audit_id"] == second.doc["audit_id"] and rec["kind"] == "replan"
    assert rec["replan"]["current"]["start"] == first.start.isoformat() and rec["replan"]["min_gain"] == 0.05
    assert [e["audit_id"] for e in rec["earlier"]] == [first.doc["audit_id"]]
    # kept as long as the run: deleting the run deletes its records
    with db.session() as s:
        s.delete(s.get_one(Run, run_id))
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(PlanAudit).where(PlanAudit.run_id == run_id))
    assert n == 0


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    day=st.integers(min_value=0, max_value=364),
    hour=st.integers(min_value=0, max_value=23),
    window_h=st.integers(min_value=3, max_value=36),
    runtime_min=st.integers(min_value=10, max_value=150),
    risk_mode=st.sampled_from(["NEUTRAL", "CONSERVATIVE", "AGGRESSIVE"]),
    carbon_only=st.booleans(),
    regions=st.sampled_from([None, [HOME], [HOME, PARIS], [PARIS, LONDON], [HOME, PARIS, LONDON]]),
)
def test_the_audit_record_recomputes_the_stored_saving(
    api, acts, db, tenant, day, hour, window_h, runtime_min, risk_mode, carbon_only, regions
):
    """Property (issue 18): from the record's series, runtime and power alone, the chosen and baseline
    emissions and the saving recompute the figures the run stores (to the rounding the product applies)."""
    cid, h, tpl = tenant
    from models.db import JobTemplate

    with db.session() as s:
        s.get_one(JobTemplate, tpl).expected_runtime_sec = runtime_min * 60
    base = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=hour)
    weights = {"carbon": 1, "risk": 0, "slack": 0} if carbon_only else None
    run_id = _job_and_run(db, cid, tpl, earliest=base, hours=window_h + math.ceil(runtime_min / 60),
                          risk_mode=risk_mode, weights=weights, regions=regions)  # fmt: skip
    _plan_and_apply(acts, run_id, base - timedelta(minutes=secrets.randbelow(60)))
    run = api.get(f"/v1/runs/{run_id}", headers=h).json()
    rec = api.get(f"/v1/runs/{run_id}/plan", headers=h).json()

    chosen_g = _emissions(rec, rec["chosen"])
    base_g = _emissions(rec, rec["baseline"])
    stored_chosen = run["carbon"]["estimated_gco2e_chosen"]
    stored_base = run["carbon"]["estimated_gco2e_earliest"]
    assert math.isclose(chosen_g, stored_chosen, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(base_g, stored_base, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(round(chosen_g, 3), run["plan"]["estimated_gco2e"], abs_tol=1e-3 + 1e-9)
    saving = 100.0 * (base_g - chosen_g) / base_g
    # the run's saved_pct and the plan's expected saving are both rounded to 0.01 by the product
    assert abs(saving - run["carbon"]["saved_pct"]) <= 0.005 + 1e-9
    assert abs(saving - run["plan"]["expected_saving_pct"]) <= 0.005 + 1e-9
    assert rec["stored"]["expected_saving_pct"] == run["plan"]["expected_saving_pct"]


def test_a_record_past_the_size_limit_drops_the_other_regions_series_first():
    import numpy as np

    from services.plan_audit import MAX_RECORD_BYTES, _bounded, decode

    rng = np.random.default_rng(1)

    def region(name):
        v, sg = rng.uniform(10, 900, 12000).tolist(), rng.uniform(1, 50, 12000).tolist()
        return {"region": name, "series": {"start": "2027-01-01T00:00:00+00:00", "step_sec": 900.0,
                                           "values": v, "sigma": sg}}  # fmt: skip

    rec = {
        "home_region": HOME,
        "chosen": {"region": PARIS},
        "regions": [region(r) for r in (HOME, PARIS, LONDON)],
    }
    raw = _bounded(rec)
    assert len(raw) <= MAX_RECORD_BYTES
    out = decode(raw)
    kept = {r["region"]: r["series"] for r in out["regions"]}
    assert kept[HOME]["values"] and kept[HOME]["sigma"] and kept[PARIS]["values"] and kept[PARIS]["sigma"]
    assert kept[LONDON]["sigma"] is None and "dropped" in out["truncated"]


def test_figures_the_planner_adds_flow_into_the_record_without_a_change_here():
    """Candidates and plan-level figures are serialised field by field: a field a future rule adds to the
    planner's Candidate or Plan (e.g. paired_days) appears in the record as it is."""
    import dataclasses
    from types import SimpleNamespace

    from models.domain import Capacity
    from scheduling.scoring import Candidate, Plan, Policy
    from services.planning import PlanInputs, audit_record

    @dataclasses.dataclass(frozen=True)
    class FutureCandidate(Candidate):  # a field no rule has yet
        future_figure: float = float("nan")

    @dataclasses.dataclass(frozen=True)
    class RulePlan(Plan):
        rule_table: dict = dataclasses.field(default_factory=dict)

    t = datetime(2027, 1, 1, tzinfo=UTC)
    c = FutureCandidate(t, t, t, -0.1, 0.0, 1.0, -0.05, 90.0, 10.0, 2.0, 0.9, 0.0, HOME,
                        paired_days=26, paired_mean_saving_pct=6.1, future_figure=1.5)  # fmt: skip
    b = FutureCandidate(t, t, t, 0.0, 0.0, 1.0, 0.0, 100.0, 0.0, region=HOME, paired_days=29)
    plan = RulePlan(c, [c, b], b, "why", Capacity.ON_DEMAND, 2, 2, rule_table={"zone": "DE", "allowed": True})
    job = SimpleNamespace(latest_finish=None, type="RESCHEDULABLE", risk_mode="NEUTRAL", weights={})
    run = SimpleNamespace(id="run_x", fleet_template_id="m5.large")
    tpl, client = SimpleNamespace(region=HOME), SimpleNamespace(region_default=HOME)
    rec = audit_record(plan, PlanInputs(policy=Policy()), job, run, tpl, client, t, None, (60.0, 90.0, []),
                       {"moved": True}, None)  # fmt: skip
    assert rec["chosen"]["paired_days"] == 26 and rec["chosen"]["paired_mean_saving_pct"] == 6.1
    assert rec["chosen"]["future_figure"] == 1.5 and rec["baseline"]["future_figure"] == "nan"
    assert rec["baseline"]["paired_days"] == 29 and rec["baseline"]["paired_mean_saving_pct"] is None
    assert [x["paired_days"] for x in rec["candidates"]] == [26, 29]
    assert (
        rec["rule"]["rule_table"] == {"zone": "DE", "allowed": True}
        and rec["rule"]["policy"]["min_saving_pct"]
    )
    json.dumps(rec, allow_nan=False)  # plain JSON, whatever the planner put in
