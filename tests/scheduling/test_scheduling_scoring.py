"""plan_schedule: the model of ARCHITECTURE.md "Scheduling model", risk modes, errors, rationale."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scheduling.carbon import CarbonSeries
from scheduling.scoring import (
    InfeasibleWindow,
    Plan,
    RiskMode,
    Weights,
    plan_schedule,
    prob_exceeds,
)

E = datetime(2026, 3, 10, tzinfo=UTC)
Q = timedelta(minutes=15)
H = timedelta(hours=1)
CARBON = Weights(1, 0, 0)


def hourly(values, start=E) -> CarbonSeries:
    return CarbonSeries(start, H, np.asarray(values, dtype=float))


def plan(
    series, latest=E + 24 * H, p50=3600.0, p90=3600.0, mode=RiskMode.CONSERVATIVE, weights=CARBON, **kw
) -> Plan:
    return plan_schedule(
        earliest=kw.pop("earliest", E),
        latest=latest,
        p50_sec=p50,
        p90_sec=p90,
        series=series,
        power_kw=kw.pop("power_kw", 2.0),
        risk_mode=mode,
        weights=weights,
        **kw,
    )


DAY = hourly([300] * 5 + [100] + [300] * 18 + [300] * 24)  # 05:00 is clean


def test_picks_cleanest_start_and_reports_numbers():
    p = plan(DAY)
    assert p.chosen.start == E + 5 * H
    assert p.chosen.emissions_g == pytest.approx(2.0 * 100)  # kW x g/kWh x 1 h
    assert p.baseline.start == E and p.baseline.emissions_g == pytest.approx(600)
    assert p.chosen.saving_vs_earliest_pct == pytest.approx(100 * (600 - 200) / 600)
    assert p.chosen.carbon == pytest.approx(-(600 - 200) / 600)  # relative to the baseline
    assert p.baseline.carbon == 0.0 and p.chosen.finish_p50 == E + 6 * H
    # DAY carries no sigma: the default 10 % relative error, correlated in time (scoring.Policy)
    assert 0 < p.chosen.saving_sigma_pct < 20 and p.chosen.prob_saving > 0.99
    assert p.total_count == 96 and p.feasible_count == 93  # starts at 23:15 .. 23:45 cannot finish
    assert p.capacity == "on-demand"
    assert p.rationale.startswith(
        "CONSERVATIVE: 93 of 96 starts finish by p90 before latest_finish; 05:00Z: expected saving 67% +- "
    )
    assert "against starting at earliest_start (P(saving > 0) 100%)" in p.rationale
    assert [c.objective for c in p.candidates] == sorted(c.objective for c in p.candidates)
    assert len(p.candidates) == 5 and p.candidates[0] is p.chosen


def test_partial_hours_integrate_exactly():
    p = plan(DAY, p50=1800, p90=1800)  # 30 min inside the clean hour
    assert p.chosen.start in (E + 5 * H, E + 5 * H + Q, E + 5 * H + 2 * Q)
    assert p.chosen.start == E + 5 * H  # ties -> earliest
    assert p.chosen.emissions_g == pytest.approx(2.0 * 100 * 0.5)


def test_ties_go_to_earliest_and_flat_series_scores_zero():
    flat = hourly([250.0] * 48)
    p = plan(flat)
    assert p.chosen.start == E and all(c.carbon == 0.0 for c in p.candidates)
    assert "every feasible start emits the same" in p.rationale


def test_lognormal_risk_matches_closed_form():
    p50, p90 = 3600.0, 5400.0
    sigma = math.log(p90 / p50) / 1.2815515655446004  # exact z(0.9); the design's 1.2816 rounded
    for limit in (1800.0, 3600.0, 5400.0, 9000.0):
        want = 0.5 * math.erfc((math.log(limit) - math.log(p50)) / sigma / math.sqrt(2))
        assert prob_exceeds(np.array([limit]), p50, p90)[0] == pytest.approx(want, abs=2e-7)
    assert prob_exceeds(np.array([5400.0]), p50, p90)[0] == pytest.approx(0.1, abs=1e-3)
    # deterministic runtime: 0/1
    np.testing.assert_array_equal(prob_exceeds(np.array([3599.0, 3600.0, 0.0]), 3600, 3600), [1, 0, 1])


def test_risk_and_slack_scores_follow_the_model():
    L = E + 6 * H
    p = plan(
        hourly([100] * 8),
        latest=L,
        p50=3600,
        p90=5400,
        mode=RiskMode.NEUTRAL,
        weights=Weights(0, 1, 0),
        top_k=100,
    )
    by_start = {c.start: c for c in p.candidates}
    c = by_start[E + 3 * H]
    assert c.risk == pytest.approx(float(prob_exceeds(np.array([3 * 3600.0]), 3600, 5400)[0]))
    assert c.slack == pytest.approx((6 - 3 - 1.5) / 6)
    late = by_start[E + 5 * H]  # p50 finish == L: feasible in NEUTRAL, risk 50%, no slack
    assert late.risk == pytest.approx(0.5, abs=1e-6) and late.slack == 0.0
    assert p.chosen.start == E  # risk-only weights: earliest start is safest


def test_conservative_requires_p90_and_neutral_p50():
    L = E + 4 * H
    s = hourly([100] * 8)
    c = plan(s, latest=L, p50=3600, p90=7200, mode=RiskMode.CONSERVATIVE, top_k=50)
    n = plan(s, latest=L, p50=3600, p90=7200, mode=RiskMode.NEUTRAL, top_k=50)
    assert c.feasible_count == 9 and max(x.finish_p90 for x in c.candidates) <= L
    assert n.feasible_count == 13 and max(x.finish_p50 for x in n.candidates) <= L


def test_infeasible_window_names_the_numbers():
    s = hourly([100] * 8)
    with pytest.raises(InfeasibleWindow) as e:
        plan(s, latest=E + 90 * timedelta(minutes=1), p50=3600, p90=7200)
    msg = str(e.value)
    assert "CONSERVATIVE" in msg and "90 min long" in msg and "2.0 h" in msg and "p90" in msg
    with pytest.raises(InfeasibleWindow, match="p50"):
        plan(s, latest=E + 30 * timedelta(minutes=1), p50=3600, p90=7200, mode=RiskMode.NEUTRAL)
    with pytest.raises(InfeasibleWindow, match="must be after"):
        plan(s, latest=E - H)
    assert isinstance(InfeasibleWindow("x"), ValueError)


def test_bad_inputs_are_value_errors():
    s = hourly([100] * 8)
    with pytest.raises(ValueError, match="does not cover"):
        plan(s, latest=E + 9 * H)
    with pytest.raises(ValueError, match="does not cover"):
        plan(s, earliest=E - H, latest=E + 2 * H)
    with pytest.raises(ValueError, match="p90_sec"):
        plan(s, latest=E + 4 * H, p50=3600, p90=1800)
    with pytest.raises(ValueError, match="p50_sec"):
        plan(s, latest=E + 4 * H, p50=0, p90=1800)
    with pytest.raises(ValueError, match=">= 0"):
        Weights(-1, 1, 1)
    with pytest.raises(ValueError, match="positive sum"):
        Weights(0, 0, 0)
    with pytest.raises(ValueError):
        plan(s, latest=E + 4 * H, spot_interruption_prob=1.5)
    with pytest.raises(ValueError, match="timezone"):
        plan(s, earliest=datetime(2026, 3, 10), latest=E + 4 * H)
    assert Weights.parse("carbon=1,risk=0,slack=0") == CARBON
    with pytest.raises(ValueError):
        Weights.parse("carbon=x")


def test_no_deadline_and_fixed_start():
    s = hourly([300, 100, 100, 300])
    p = plan(s, latest=None, p50=1800, p90=3600, weights=Weights())
    assert p.total_count == 1 and p.chosen.start == E and p.chosen.risk == 0 and p.chosen.slack == 1
    assert p.chosen is p.candidates[0] and p.baseline == p.chosen
    assert "no latest_finish" in p.rationale
    f = plan(s, latest=E + 4 * H, p50=1800, p90=3600, fixed_start=True)
    assert f.total_count == 1 and f.chosen.start == E and "fixed start" in f.rationale
    with pytest.raises(ValueError, match="does not cover"):
        plan(s, latest=None, p50=3600, p90=5 * 3600)


def test_notes_are_appended_to_the_rationale():
    p = plan(DAY, notes=["no runtime history: using expected_runtime_sec 3600 s", "flat CCF factor"])
    assert p.rationale.endswith("; no runtime history: using expected_runtime_sec 3600 s; flat CCF factor")
    assert p.notes == ("no runtime history: using expected_runtime_sec 3600 s", "flat CCF factor")


def test_capacity_rules_by_risk_mode():
    s = hourly([100] * 30)
    L = E + 24 * H  # room for p50 + p90
    kw = dict(latest=L, p50=3600, p90=5400, weights=Weights())
    assert plan(s, mode=RiskMode.CONSERVATIVE, spot_interruption_prob=0.01, **kw).capacity == "on-demand"
    neutral = plan(s, mode=RiskMode.NEUTRAL, spot_interruption_prob=0.01, **kw)
    assert neutral.capacity == "spot" and neutral.chosen.risk >= 0.0
    assert "spot capacity (interruption probability 1%" in neutral.rationale
    assert "a lost partial run is counted" in neutral.rationale
    # expected lost partial run: p_int x half the run x its emissions
    assert neutral.chosen.lost_run_g == pytest.approx(0.01 * 0.5 * neutral.chosen.emissions_g)
    assert plan(s, mode=RiskMode.NEUTRAL, spot_interruption_prob=0.06, **kw).capacity == "on-demand"
    short = dict(kw, latest=E + 2 * H)  # no room for an on-demand rerun
    assert plan(s, mode=RiskMode.NEUTRAL, spot_interruption_prob=0.01, **short).capacity == "on-demand"
    agg = plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=0.2, **kw)
    assert agg.capacity == "spot" and agg.chosen.lost_run_g > 0
    # AGGRESSIVE caps the interruption probability too (default 0.2), even with room for a rerun
    assert plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=0.21, **kw).capacity == "on-demand"
    assert plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=0.9, **kw).capacity == "on-demand"
    tight = plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=0.2, **dict(kw, latest=E + 2 * H))
    od = plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=1.0, **dict(kw, latest=E + 2 * H))
    # the rerun after an interruption (1.5 x the runtime in expectation) is counted in the miss risk
    assert tight.capacity == "spot" and tight.chosen.risk > od.chosen.risk
    assert plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=1.0, **kw).capacity == "on-demand"
    assert plan(s, mode=RiskMode.AGGRESSIVE, spot_interruption_prob=0.0, **kw).capacity == "on-demand"


def test_string_risk_mode_and_to_dict():
    p = plan(DAY, mode="NEUTRAL")
    d = p.to_dict()
    assert d["risk_mode"] == "NEUTRAL" and d["chosen"]["proposed_start"] == "2026-03-10T05:00:00Z"
    assert set(d["chosen"]["scores"]) == {"carbon", "risk", "slack"}


def test_risk_weight_trades_carbon_for_safety():
    # clean hour late in the window, near latest_finish: risky with a wide runtime distribution
    s = hourly([300] * 7 + [50] + [300] * 4)
    L = E + 9 * H
    greedy = plan(s, latest=L, p50=3600, p90=3 * 3600, mode=RiskMode.NEUTRAL, weights=CARBON)
    careful = plan(s, latest=L, p50=3600, p90=3 * 3600, mode=RiskMode.NEUTRAL, weights=Weights(0.1, 0.9, 0))
    assert greedy.chosen.start == E + 7 * H and greedy.chosen.risk > 0.2
    assert careful.chosen.risk < 0.01 and careful.chosen.emissions_g > greedy.chosen.emissions_g


def test_joint_plan_rationale_names_the_region_and_the_home_regions_best():
    from scheduling.carbon import embedded_history, zone_for_region
    from scheduling.scoring import RegionOption, plan_regions

    e = datetime(2023, 5, 2, 3, 20, tzinfo=UTC)
    opts = [
        RegionOption(
            r,
            embedded_history(zone_for_region(r) or "").slice(e - timedelta(days=1), e + timedelta(days=2)),
            0.2,
        )
        for r in ("eu-central-1", "eu-west-3")
    ]
    kw = dict(
        earliest=e,
        latest=e + timedelta(hours=12),
        p50_sec=3600,
        p90_sec=3600,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
    )
    p = plan_regions(options=opts, **kw)
    assert p.region == "eu-west-3" and p.baseline.region == "eu-central-1"
    assert p.home_best is not None and p.home_best.region == "eu-central-1"
    assert "in eu-west-3" in p.rationale and "eu-central-1 (home)" in p.rationale
    assert f"the best start in eu-central-1 alone, {p.home_best.start:%H:%M}Z" in p.rationale
    assert p.chosen.to_dict()["region"] == "eu-west-3"
    # not selectable (e.g. the type is not offered there): never chosen, never listed
    opts[1] = RegionOption("eu-west-3", opts[1].series, 0.2, selectable=False)
    p2 = plan_regions(options=opts, **kw)
    assert {c.region for c in p2.candidates} == {"eu-central-1"} and p2.regions == ("eu-central-1",)
