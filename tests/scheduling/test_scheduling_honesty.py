"""Honest scoring (issue 11): baseline-relative carbon scores, forecast uncertainty and the skill gate,
spot caps and lost-run accounting, and the embedded climatology's sigma."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.carbon import CarbonSeries, embedded_history
from scheduling.forecast import CLIMATOLOGY_SIGMA_INFLATION, _smooth_days, climatology_forecast
from scheduling.scoring import (
    MIN_SAVING_PCT,
    MIN_SAVING_PROB,
    UNGATED,
    Policy,
    RiskMode,
    Weights,
    _corr_F,
    _diff_sigma,
    plan_schedule,
)

BASE = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)
Q = timedelta(minutes=15)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw, weights=None, rel_sigma=None):
    """Random series (with or without sigma), window, runtime spread, mode, spot; default weights unless
    told otherwise."""
    n = draw(st.integers(min_value=12, max_value=120))
    values = np.array(draw(st.lists(st.integers(20, 900), min_size=n, max_size=n)), dtype=float)
    rs = draw(st.sampled_from([None, 0.0, 0.02, 0.1, 0.3, 1.0])) if rel_sigma is None else rel_sigma
    sigma = None if rs is None else values * rs
    series = CarbonSeries(BASE, Q * 2, values, sigma)  # 30-minute grid
    total_h = n / 2
    p50_h = draw(st.floats(min_value=0.25, max_value=max(0.25, total_h / 3)))
    spread = draw(st.sampled_from([1.0, 1.2, 1.5, 2.0]))
    mode = draw(st.sampled_from(list(RiskMode)))
    need_h = p50_h * (spread if mode is RiskMode.CONSERVATIVE else 1.0)
    room = total_h - need_h
    if room < 0:
        spread, need_h = 1.0, p50_h
        room = total_h - p50_h
    latest = BASE + timedelta(hours=need_h + draw(st.floats(min_value=0.0, max_value=room)))
    return dict(
        earliest=BASE,
        latest=latest,
        p50_sec=p50_h * 3600,
        p90_sec=p50_h * 3600 * spread,
        series=series,
        power_kw=1.3,
        risk_mode=mode,
        weights=weights or Weights(),
        spot_interruption_prob=draw(st.sampled_from([0.0, 0.02, 0.1, 0.3, 1.0])),
        top_k=50,
    )


# --------------------------------------------------------------------------- 1. absolute carbon scores


@SETTINGS
@given(scenarios(weights=Weights(1, 0, 0)), st.floats(min_value=0.1, max_value=10))
def test_baseline_scores_zero_and_carbon_scales_with_the_relative_saving(kw, k):
    p = plan_schedule(**kw)
    assert p.baseline.carbon == 0.0 and p.baseline.saving_vs_earliest_pct == 0.0
    for c in p.candidates:
        rel = (c.emissions_g - p.baseline.emissions_g) / p.baseline.emissions_g
        assert c.carbon == pytest.approx(rel, rel=1e-9, abs=1e-12)
        assert c.saving_vs_earliest_pct == pytest.approx(-100 * c.carbon, abs=1e-9)
    # scaling the whole grid's intensity leaves every relative score (and the choice) unchanged
    s = kw["series"]
    scaled = CarbonSeries(s.start, s.step, s.values * k, None if s.sigma is None else s.sigma * k)
    q = plan_schedule(**{**kw, "series": scaled})
    assert q.chosen.start == p.chosen.start
    assert [c.carbon for c in q.candidates] == pytest.approx([c.carbon for c in p.candidates], abs=1e-9)


@pytest.mark.parametrize("saving", [0.005, 0.05, 0.5])
def test_half_a_percent_is_worth_half_a_percent_not_one(saving):
    values = np.full(24, 400.0)
    values[6] = 400.0 * (1 - saving)
    s = CarbonSeries(BASE, H, values)
    p = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=s,
        power_kw=1,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(1, 0, 0),
        policy=UNGATED,
        top_k=48,
    )
    six = next(c for c in p.candidates if c.start == BASE + 6 * H)
    assert six.carbon == pytest.approx(-saving)  # min-max would have scored it -1 .. 0 as 0 vs 1
    assert p.chosen.start == BASE + 6 * H


# --------------------------------------------------------------------------- 2. the skill gate


@SETTINGS
@given(scenarios())
def test_a_moved_start_has_the_minimum_saving_and_probability(kw):
    p = plan_schedule(**kw)
    c, b = p.chosen, p.baseline
    if c.start != b.start:
        assert c.saving_vs_earliest_pct >= MIN_SAVING_PCT - 1e-9
        assert c.prob_saving >= MIN_SAVING_PROB
        assert c.saving_sigma_pct >= 0


@SETTINGS
@given(scenarios())
def test_default_weights_never_buy_more_than_a_point_of_risk_per_percent_of_saving(kw):
    p = plan_schedule(**kw)
    added_pts = (p.chosen.risk - p.baseline.risk) * 100
    assert added_pts <= 1.0 * max(p.chosen.saving_vs_earliest_pct, 0.0) + 1e-9


@SETTINGS
@given(scenarios(), st.integers(20, 900))
def test_a_flat_forecast_keeps_the_baseline(kw, level):
    s = kw["series"]
    flat = CarbonSeries(s.start, s.step, np.full(len(s), float(level)), s.sigma)
    p = plan_schedule(**{**kw, "series": flat})
    assert p.chosen.start == p.baseline.start == kw["earliest"]
    assert not p.skill_gated


@SETTINGS
@given(scenarios(rel_sigma=3.0))
def test_a_skill_less_forecast_keeps_the_baseline_and_says_why(kw):
    """sigma three times the values: no difference in the data can be trusted."""
    p = plan_schedule(**kw)
    assert p.chosen.start == p.baseline.start
    if p.skill_gated:
        assert "is kept: the best alternative" in p.rationale
        assert "P(saving > 0)" in p.rationale or "minimum saving" in p.rationale


def test_rationale_reports_saving_with_uncertainty_and_the_gate_reason():
    values = np.full(24, 300.0)
    values[5] = 200.0  # 05:00 is a third cleaner
    sure = CarbonSeries(BASE, H, values, values * 0.05)
    p = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=sure,
        power_kw=1,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
    )
    assert p.chosen.start == BASE + 5 * H and not p.skill_gated
    assert "05:00Z: expected saving 33% +- " in p.rationale
    assert p.chosen.to_dict()["expected_saving_pct"] == pytest.approx(100 / 3)
    assert 0 < p.chosen.saving_sigma_pct < 10
    unsure = sure.with_sigma(values * 1.0)
    q = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=unsure,
        power_kw=1,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
    )
    assert q.chosen.start == BASE and q.skill_gated
    # the 1-sigma is wider than the saving itself: the text says so instead of "33.3% +- 60%"
    assert (
        "00:00Z (earliest_start) is kept: the best alternative, 05:00Z, would save 33.3% (uncertain: +- "
        in q.rationale
    )
    assert q.candidates[1].saving_sigma_pct > q.candidates[1].saving_vs_earliest_pct
    assert "the forecast's uncertainty swamps the difference" in q.rationale
    # a small sure saving is below the minimum
    small = np.full(24, 300.0)
    small[1] = 300.0 * 0.98  # 2 % cleaner, one hour later: the objective alone would take it
    r = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=CarbonSeries(BASE, H, small, np.zeros(24)),
        power_kw=1,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
    )
    assert r.chosen.start == BASE and "below the 3% minimum saving" in r.rationale
    u = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=CarbonSeries(BASE, H, small, np.zeros(24)),
        power_kw=1,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        policy=Policy(min_saving_pct=1.0),
    )
    assert u.chosen.start == BASE + H  # the minimum is a setting


def test_baseline_argument_scores_against_a_nominal_start():
    values = np.array([100.0] * 4 + [300.0] * 4 + [100.0] * 16)
    s = CarbonSeries(BASE, H, values, values * 0.05)
    kw = dict(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=s,
        power_kw=1,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(1, 0, 0),
        top_k=24,
    )
    p = plan_schedule(**kw, baseline=BASE + 5 * H)
    assert p.baseline.start == BASE + 5 * H and p.baseline.carbon == 0.0
    assert p.chosen.saving_vs_earliest_pct == pytest.approx(100 * 2 / 3)
    assert "against starting at the baseline 05:00Z" in p.rationale


def test_correlation_kernel_identity_matches_a_numeric_double_integral():
    pol = Policy(corr_floor=0.3, corr_hours=2.0)
    tau = 2.0 * 3600
    T, d = 5400.0, 4000.0
    u = (np.arange(400) + 0.5) / 400 * T

    def k(x):
        return 0.3 + 0.7 * np.exp(-np.abs(x) / tau)

    num = k(u[:, None] - (d + u)[None, :]).mean() * T * T
    F = _corr_F
    closed = float(F(np.array(T - d), pol) + F(np.array(T + d), pol) - 2 * F(np.array(d), pol))
    assert closed == pytest.approx(num, rel=1e-4)
    # same sigma at both starts, d -> 0: no uncertainty in the difference; far apart: sqrt(2 (1 - a)) sigma T
    sd = _diff_sigma(np.array([10.0, 10.0]), 10.0, np.array([0.0, 1e9]), T, pol)
    assert sd[0] == pytest.approx(0.0, abs=1e-6)
    G = 2 * float(F(np.array(T), pol))
    assert sd[1] == pytest.approx(10 * math.sqrt(2 * G - 2 * 0.3 * T * T), rel=1e-6)


# --------------------------------------------------------------------------- spot honesty


@SETTINGS
@given(scenarios())
def test_spot_caps_and_lost_run_accounting(kw):
    p = plan_schedule(**kw)
    pi = kw["spot_interruption_prob"]
    if p.capacity == "spot":
        cap = 0.05 if kw["risk_mode"] is RiskMode.NEUTRAL else 0.2
        assert kw["risk_mode"] is not RiskMode.CONSERVATIVE and 0 < pi <= cap
        for c in p.candidates:
            assert c.lost_run_g == pytest.approx(pi * 0.5 * c.emissions_g)
        assert "a lost partial run is counted" in p.rationale
    else:
        assert all(c.lost_run_g == 0 for c in p.candidates)


def test_policy_validation():
    with pytest.raises(ValueError, match="min_saving_prob"):
        Policy(min_saving_prob=1.5)
    with pytest.raises(ValueError, match="corr_hours"):
        Policy(corr_hours=0)
    with pytest.raises(ValueError, match="min_saving_pct"):
        Policy(min_saving_pct=float("nan"))


# --------------------------------------------------------------------------- series sigma, climatology


def test_sigma_is_carried_by_every_transform():
    s = CarbonSeries(BASE, H, [100.0, 200.0, 300.0, 400.0], [10.0, 20.0, 30.0, 40.0], "marginal")
    assert s.slice(BASE + H, BASE + 3 * H).sigma.tolist() == [20.0, 30.0]
    assert s.resample(Q).sigma.tolist()[:5] == [10.0] * 4 + [20.0]
    assert s.resample(2 * H).sigma.tolist() == [15.0, 35.0]
    r = s.regrid(BASE + 30 * timedelta(minutes=1), BASE + 3 * H, H)
    assert r.sigma.tolist() == pytest.approx([15.0, 25.0, 35.0])
    assert s.shift(H).sigma is s.sigma and s.shift(H).signal == "marginal"
    assert CarbonSeries(BASE, H, [1.0, 2.0]).resample(Q).sigma is None
    with pytest.raises(ValueError, match="sigma"):
        CarbonSeries(BASE, H, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="sigma"):
        CarbonSeries(BASE, H, [1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="signal"):
        CarbonSeries(BASE, H, [1.0, 2.0], signal="lca")


def test_climatology_sigma_is_the_spread_of_actuals_around_it():
    year = embedded_history("DE")
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    fc = climatology_forecast(year, t0, t0 + 364 * 24 * H, H)
    assert fc.sigma is not None and fc.sigma.shape == fc.values.shape and (fc.sigma > 0).all()
    resid = year.values[: len(fc)] - fc.values
    raw = fc.sigma / CLIMATOLOGY_SIGMA_INFLATION  # the in-sample spread, before the other-years margin
    inside = float(np.mean(np.abs(resid) <= raw))
    assert 0.55 <= inside <= 0.85  # about one sigma: ~68 % of the (in-sample) actuals
    assert float(np.mean(np.abs(resid) <= fc.sigma)) > inside
    # a short history (no season) gets one profile with a per-hour spread
    short = year.slice(t0, t0 + 30 * 24 * H)
    f2 = climatology_forecast(short, t0 + 40 * 24 * H, t0 + 41 * 24 * H, H)
    assert f2.sigma is not None and len(f2) == 24 and (f2.sigma > 0).all()
    with pytest.raises(ValueError, match="14 days"):
        climatology_forecast(year.slice(t0, t0 + 5 * 24 * H), t0, t0 + H)


def test_weekday_factor_fades_instead_of_jumping_at_midnight():
    f = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.8])
    w = _smooth_days(f)
    steps = np.abs(np.diff(w.ravel()))
    assert steps.max() <= 0.2 / 24 + 1e-12  # a 20 % weekday step spread over a day, not one hour
    assert w[5].mean() == pytest.approx(0.8 - 0.2 / 8, abs=1e-9) or w[5].mean() < 0.9


def test_settings_drive_the_planning_policy_and_the_run_doc_reports_the_uncertainty():
    from core.settings import Settings
    from services.planning import candidate_doc, planning_policy

    pol = planning_policy(Settings(min_saving_pct=5.0, min_saving_prob=0.9, spot_max_prob_aggressive=0.1))
    assert (pol.min_saving_pct, pol.min_saving_prob, pol.aggressive_spot_max_prob) == (5.0, 0.9, 0.1)
    assert planning_policy(Settings()) == Policy()  # the settings' defaults are the planner's
    values = np.full(24, 300.0)
    values[5] = 150.0
    p = plan_schedule(
        earliest=BASE,
        latest=BASE + 12 * H,
        p50_sec=3600,
        p90_sec=3600,
        series=CarbonSeries(BASE, H, values),
        power_kw=1,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        policy=pol,
    )
    doc = candidate_doc(p.chosen)
    assert doc["expected_saving_pct"] == 50.0 and 0 < doc["saving_sigma_pct"] < 15
    assert doc["prob_saving"] > 0.99 and doc["expected_lost_run_gco2e"] == 0


def test_seasonal_forecast_carries_a_calibrated_enough_sigma():
    from scheduling.forecast import SeasonalForecaster

    year = embedded_history("GB")
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    inside, n = 0, 0
    for day in range(60, 360, 15):
        cut = t0 + day * 24 * H
        fc = SeasonalForecaster().forecast(year.slice(t0, cut), cut, cut + 48 * H, H)
        assert fc.sigma is not None and (fc.sigma > 0).all()
        act = year.slice(cut, cut + 48 * H).values
        inside += int(np.sum(np.abs(act - fc.values) <= fc.sigma))
        n += len(act)
    assert 0.5 <= inside / n <= 0.95  # about one sigma (an upper bound at short horizons)


def test_run_record_reports_the_expected_saving_with_its_uncertainty():
    from api.routers.runs import run_out
    from models.db import Run

    now = datetime(2026, 3, 1, tzinfo=UTC)
    run = Run(
        id="r1",
        job_id="j1",
        workflow_id="run-r1",
        job_template_id="t1",
        fleet_template_id="m5.large",
        client_id="c1",
        status="SCHEDULED",
        plan={"expected_saving_pct": 12.04, "saving_sigma_pct": 4.96, "rationale": "..."},
        created_at=now,
        updated_at=now,
        attempts=0,
        carbon_chosen_g=88.0,
        carbon_earliest_g=100.0,
    )
    out = run_out(run).carbon
    assert (out.expected_saving_pct, out.saving_sigma_pct, out.saved_pct) == (12.04, 4.96, 12.0)
    run.plan = None  # runs planned before issue 11 have no such fields
    assert run_out(run).carbon.expected_saving_pct is None


def test_plan_for_run_reports_the_gate_and_the_uncertainty(tmp_path):
    """The activity's planning code on a real (SQLite) session with the embedded provider."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from core.settings import Settings
    from models.db import Base, Client, Job, JobTemplate, Run
    from services.planning import plan_for_run

    settings = Settings(carbon_provider="embedded", data_dir=tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    Base.metadata.create_all(engine)

    def plan(region: str, earliest: datetime, latest: datetime):
        client = Client(id="c1", name="acme", api_key_hash="h", api_key_prefix="p", region_default=region)
        tpl = JobTemplate(
            id="t1",
            client_id="c1",
            name="n",
            app_artifact_id="a1",
            fleet_template_id="m5.large",
            expected_runtime_sec=3600,
        )
        job = Job(
            id="j1",
            client_id="c1",
            job_template_id="t1",
            type="RESCHEDULABLE",
            earliest_start=earliest,
            latest_finish=latest,
            risk_mode="NEUTRAL",
            weights={},
            request_hash="x",
        )
        run = Run(
            id="r1",
            job_id="j1",
            client_id="c1",
            job_template_id="t1",
            fleet_template_id="m5.large",
            workflow_id="run-r1",
        )
        with Session(engine) as session:
            return plan_for_run(session, settings, run, job, tpl, client, not_before=earliest)

    # California in June: the evening (02:00Z = 19:00 PDT) is dirty, the solar noon (19:00Z) clean
    e = datetime(2026, 6, 10, 2, tzinfo=UTC)
    res = plan("us-west-1", e, e + 22 * H)
    doc = res.doc
    # the embedded climatology is history-based: the paired rule decides (issue 18), and the rationale and
    # the stored plan carry its figures instead of the forecast's +- (the sigma is still recorded)
    assert res.start != e and doc["expected_saving_pct"] > 0 and doc["saving_sigma_pct"] > 0
    rule = doc["decision_rule"]
    assert rule["rule"] == "paired" and rule["zone"] == "US-CAL-CISO" and rule["allowed"] is True
    assert doc["paired_days"] == rule["paired_days"] > 0
    assert doc["paired_days_saved"] >= rule["min_share_saved"] * doc["paired_days"]
    assert doc["paired_mean_saving_pct"] >= rule["min_mean_saving_pct"]
    assert f"saved on {doc['paired_days_saved']} of {doc['paired_days']} comparable days" in res.rationale
    assert doc["skill_gated"] is False and res.carbon_chosen_g < res.carbon_earliest_g
    # a region with only a flat annual factor has nothing to gain: the baseline, and the rationale says so
    res = plan("eu-north-1", e, e + 22 * H)
    assert res.start == e and res.doc["expected_saving_pct"] == 0
    assert "every feasible start emits the same" in res.rationale


def test_candidate_documents_never_show_minus_zero():
    """A start that saves nothing by float noise (-1e-15 %) is documented as 0.0, not -0.0."""
    from datetime import UTC, datetime

    from scheduling.scoring import Candidate
    from services.planning import candidate_doc

    t = datetime(2026, 1, 1, tzinfo=UTC)
    doc = candidate_doc(Candidate(t, t, t, -0.0, 0.0, 1.0, 0.0, 1.0, -1e-15, -0.0, 0.5, 0.0, "us-east-1"))
    assert str(doc["saving_vs_earliest_pct"]) == "0.0" and str(doc["expected_saving_pct"]) == "0.0"
    assert str(doc["saving_sigma_pct"]) == "0.0"
