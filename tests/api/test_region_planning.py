"""Choosing the region (issue 14), the planner through the API: the preview plans (region, start) jointly
over the client's allowed regions narrowed by the template and the request, with the home region as the
baseline; a client without regions gets exactly the one-region answer; a region where the instance type is
not offered is never chosen; the data region's transfer is named; the chart draws every region."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.catalog import fleet_power_kw, get_fleet_template, spot_interruption_probability
from scheduling.scoring import RiskMode, Weights, plan_schedule
from services.planning import carbon_series, planning_policy
from tests.support.api import AWS_BODY, template_body, upload
from tests.support.common import new_client
from tests.support.zips import make_zip

HOME = "eu-central-1"  # Germany: ~380 g/kWh
PARIS = "eu-west-3"  # France: ~50 g/kWh
LONDON = "eu-west-2"
CARBON_ONLY = {"carbon": 1.0, "risk": 0.0, "slack": 0.0}


def _template(api, allowed: list[str] | None, **over) -> tuple[str, dict, str]:
    cid, h = new_client(api, "planner-regions")
    aws = AWS_BODY | {"region_default": HOME} | ({"allowed_regions": allowed} if allowed else {})
    r = api.put(f"/v1/clients/{cid}/aws", json=aws, headers=h)
    assert r.status_code == 200, r.text
    art = upload(api, h, make_zip()).json()["artifact_id"]
    body = template_body(art, expected_runtime_sec=3600, fleet_template_id="m5.large") | over
    t = api.post("/v1/job-templates", json=body, headers=h)
    assert t.status_code == 201, t.text
    return cid, h, t.json()["id"]


def _preview(api, h, tpl, hours=12, **over):
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    body = {
        "job_template_id": tpl,
        "earliest_start": start.isoformat(),
        "latest_finish": (start + timedelta(hours=hours)).isoformat(),
        "risk_mode": "NEUTRAL",
    } | over
    r = api.post("/v1/schedules/preview", json=body, headers=h)
    assert r.status_code == 200, r.text
    return r.json(), start


def test_carbon_only_job_allowed_in_paris_runs_there_against_the_home_baseline(api):
    _, h, tpl = _template(api, [HOME, PARIS, LONDON])
    p, _ = _preview(api, h, tpl, weights=CARBON_ONLY)
    assert p["chosen"]["region"] == PARIS
    assert p["home_region"] == HOME and p["baseline"]["region"] == HOME
    assert p["regions"] == [HOME, PARIS, LONDON]
    assert p["home_best"]["region"] == HOME
    assert {c["region"] for c in p["candidates"]} <= {HOME, PARIS, LONDON}
    # the saving is against the home region at the baseline start: France's grid saves most of it
    assert p["chosen"]["saving_vs_earliest_pct"] > 50
    assert (
        p["chosen"]["estimated_gco2e"] < p["home_best"]["estimated_gco2e"] <= p["baseline"]["estimated_gco2e"]
    )
    assert f"in {PARIS}" in p["rationale"] and f"the best start in {HOME} alone" in p["rationale"]
    # the request narrows it: home only is the home region's own plan
    only_home, _ = _preview(api, h, tpl, weights=CARBON_ONLY, regions=[HOME])
    assert only_home["chosen"]["region"] == HOME and only_home["regions"] == [HOME]
    assert only_home["chosen"]["proposed_start"] == p["home_best"]["proposed_start"]
    # ... and the template too
    _, h2, narrow = _template(api, [HOME, PARIS, LONDON], regions=[LONDON, HOME])
    p2, _ = _preview(api, h2, narrow, weights=CARBON_ONLY)
    assert p2["regions"] == [HOME, LONDON] and p2["chosen"]["region"] == LONDON
    # a region outside the template's list is a 422 naming it, as for a job
    start = datetime.now(UTC) + timedelta(hours=1)
    bad = {"job_template_id": narrow, "earliest_start": start.isoformat(), "regions": [HOME, PARIS]}
    r = api.post(
        "/v1/schedules/preview",
        json=bad | {"latest_finish": (start + timedelta(hours=9)).isoformat()},
        headers=h2,
    )
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["regions/1"], r.text


def test_a_client_without_regions_gets_the_one_region_answer(api, api_settings):
    _, h, tpl = _template(api, None)
    p, start = _preview(api, h, tpl)
    assert p["regions"] == [HOME] and p["chosen"]["region"] == HOME and p.get("home_best") is None
    # the same plan the one-region planner makes from the same forecast
    ft = get_fleet_template("m5.large")
    assert ft is not None
    latest = start + timedelta(hours=12)
    series, _ = carbon_series(api_settings, HOME, start, latest)
    plan = plan_schedule(
        earliest=start,
        latest=latest,
        p50_sec=3600,
        p90_sec=5400,
        series=series,
        power_kw=fleet_power_kw(ft),
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        spot_interruption_prob=spot_interruption_probability(ft, HOME, 3600),
        step=timedelta(minutes=api_settings.forecast_step_min),
        policy=planning_policy(api_settings),
    )
    assert datetime.fromisoformat(p["chosen"]["proposed_start"]) == plan.chosen.start
    assert p["chosen"]["estimated_gco2e"] == round(plan.chosen.emissions_g, 3)
    assert p["rationale"].startswith(plan.rationale.split(";")[0])


def test_a_region_where_the_instance_type_is_not_offered_is_never_chosen(api):
    # a1 (the first Graviton) was never offered in Paris
    _, h, tpl = _template(api, [HOME, PARIS], fleet_template_id="a1.2xlarge")
    p, _ = _preview(api, h, tpl, weights=CARBON_ONLY)
    assert p["chosen"]["region"] == HOME and p["regions"] == [HOME]
    assert all(c["region"] == HOME for c in p["candidates"])
    assert f"a1.2xlarge is not offered in {PARIS}" in p["rationale"]


def test_data_region_stays_unless_the_job_lists_regions_and_the_transfer_is_named(api):
    _, h, tpl = _template(api, [HOME, PARIS], data_region=HOME)
    stay, _ = _preview(api, h, tpl, weights=CARBON_ONLY)
    assert stay["chosen"]["region"] == HOME and stay["regions"] == [HOME]
    moved, _ = _preview(api, h, tpl, weights=CARBON_ONLY, regions=[HOME, PARIS])
    assert moved["chosen"]["region"] == PARIS
    assert (
        f"the template's data is in {HOME}" in moved["rationale"] and "across regions" in moved["rationale"]
    )


def test_the_chart_draws_one_line_per_region(api):
    _, h, tpl = _template(api, [HOME, PARIS])
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    body = {
        "job_template_id": tpl,
        "earliest_start": start.isoformat(),
        "latest_finish": (start + timedelta(hours=12)).isoformat(),
        "weights": CARBON_ONLY,
    }
    r = api.post("/v1/schedules/preview?format=svg", json=body, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert f"{PARIS} (chosen) g/kWh".encode() in r.content and f"{HOME} g/kWh".encode() in r.content
    # issue 20: the title says what (the template's name) and where, and the start's saving
    name = api.get(f"/v1/job-templates/{tpl}", headers=h).json()["name"]
    assert f"{name} in {PARIS}: start ".encode() in r.content and b" saves " in r.content


def test_a_run_is_planned_into_the_cleaner_region_and_fails_clearly_when_none_is_left(api, api_settings):
    from sqlalchemy.orm import Session

    from models.db import Client, Job, JobTemplate, Run
    from services.planning import plan_for_run
    from services.regions import NoCandidateRegion
    from tests.support.api import engine_for, insert_job_and_run

    cid, _, tpl = _template(api, [HOME, PARIS], regions=[HOME, PARIS])
    _, run_id = insert_job_and_run(api_settings, cid, tpl)
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s:
            run = s.get_one(Run, run_id)
            job, template, client = (
                s.get_one(Job, run.job_id),
                s.get_one(JobTemplate, tpl),
                s.get_one(Client, cid),
            )
            res = plan_for_run(s, api_settings, run, job, template, client, datetime.now(UTC))
            assert res.region == PARIS and res.doc["region"] == PARIS and res.doc["home_region"] == HOME
            assert res.carbon_chosen_g is not None and res.carbon_earliest_g is not None
            assert res.carbon_chosen_g < res.carbon_earliest_g / 2  # the baseline is the home region's
            client.allowed_regions = [PARIS]  # the client narrowed its regions after the template was made
            template.regions = [HOME]
            try:
                plan_for_run(s, api_settings, run, job, template, client, datetime.now(UTC))
                raise AssertionError("planned with no region left")
            except NoCandidateRegion as exc:
                assert "no region is allowed" in str(exc)
            s.rollback()
    finally:
        eng.dispose()


POOL = ["eu-central-1", "eu-west-3", "eu-west-2", "eu-south-2", "us-east-1", "us-west-1", "ca-central-1"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    allowed=st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True),
    tpl_pick=st.lists(st.sampled_from(POOL), max_size=4, unique=True),
    job_pick=st.lists(st.sampled_from(POOL), max_size=4, unique=True),
    fleet=st.sampled_from(["m5.large", "a1.2xlarge", "c7g.xlarge"]),
    carbon_only=st.booleans(),
)
def test_the_chosen_region_is_always_in_the_client_template_and_job_lists(
    allowed, tpl_pick, job_pick, fleet, carbon_only
):
    """Property (issue 14): whatever the lists, the planner's region is in client ∩ template ∩ job, and never
    one where the instance type is known not to be offered while another candidate offers it."""
    from types import SimpleNamespace

    from scheduling.catalog import offered_in
    from services.planning import _plan
    from services.regions import NoCandidateRegion, candidate_regions
    from tests.support.carbon import cfg

    client = SimpleNamespace(region_default=allowed[0], allowed_regions=allowed)
    template = SimpleNamespace(
        region=None, regions=tpl_pick or None, data_region=None, expected_runtime_sec=3600
    )
    job_regions = job_pick or None
    try:
        cands = candidate_regions(client, template, job_regions)
    except NoCandidateRegion:
        assert not set(allowed) & set(tpl_pick or POOL) & set(job_pick or POOL)
        return
    start = datetime(2026, 6, 1, 8, tzinfo=UTC)
    plan, _, _ = _plan(
        None,
        cfg(),
        template,
        client,
        fleet,
        start,
        start + timedelta(hours=10),
        "NEUTRAL",
        Weights(1.0, 0.0, 0.0) if carbon_only else Weights(),
        fixed_start=False,
        runtime=(3600.0, 5400.0, []),
        regions=cands,
    )
    chosen = plan.chosen.region
    assert chosen in set(allowed) & set(tpl_pick or POOL) & set(job_pick or POOL)
    ft = get_fleet_template(fleet)
    assert ft is not None
    if any(offered_in(ft, r) is not False for r in cands):
        assert offered_in(ft, chosen) is not False
