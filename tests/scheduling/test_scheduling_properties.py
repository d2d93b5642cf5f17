"""Property tests (hypothesis) of plan_schedule, and equality with the GSF Carbon Aware SDK's choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.carbon import CarbonSeries
from scheduling.scoring import UNGATED, RegionOption, RiskMode, Weights, plan_regions, plan_schedule

BASE = datetime(2026, 1, 5, tzinfo=UTC)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw):
    step_min = draw(st.sampled_from([5, 15, 30, 60]))
    n = draw(st.integers(min_value=8, max_value=150))
    values = draw(st.lists(st.integers(min_value=0, max_value=900), min_size=n, max_size=n))
    series = CarbonSeries(BASE, timedelta(minutes=step_min), np.array(values, dtype=float))
    total_min = n * step_min
    e_off = draw(st.integers(min_value=0, max_value=total_min // 3))
    p50 = draw(st.integers(min_value=1, max_value=max(1, (total_min - e_off) // 2))) * 60.0
    p90 = p50 * draw(st.sampled_from([1.0, 1.0, 1.2, 1.5, 2.0]))
    mode = draw(st.sampled_from(list(RiskMode)))
    need = p90 if mode is RiskMode.CONSERVATIVE else p50
    e = BASE + timedelta(minutes=e_off)
    room = total_min - e_off - need / 60.0
    if room < 0:
        p90 = p50
        need = p50
        room = total_min - e_off - p50 / 60.0
    latest = e + timedelta(minutes=need / 60.0 + draw(st.floats(min_value=0, max_value=room)))
    weights = Weights(
        *draw(st.tuples(*[st.floats(min_value=0, max_value=1)] * 3).filter(lambda w: sum(w) > 0))
    )
    grid = timedelta(minutes=draw(st.sampled_from([5, 15, 60])))
    spot = draw(st.sampled_from([0.0, 0.02, 0.3, 1.0]))
    return dict(
        earliest=e,
        latest=latest,
        p50_sec=p50,
        p90_sec=p90,
        series=series,
        power_kw=1.5,
        risk_mode=mode,
        weights=weights,
        step=grid,
        spot_interruption_prob=spot,
        top_k=50,
    )


def passes_gate(x, base) -> bool:
    """The default Policy's rule for leaving the baseline (scoring.Policy)."""
    return (
        x.saving_vs_earliest_pct >= 3.0 - 1e-9
        and x.prob_saving >= 0.8
        and (x.risk - base.risk) * 100 <= x.saving_vs_earliest_pct + 1e-9
    )


@SETTINGS
@given(scenarios())
def test_chosen_start_is_feasible_and_scores_in_unit_interval(kw):
    p = plan_schedule(**kw)
    c = p.chosen
    assert kw["earliest"] <= c.start < kw["latest"] or c.start == kw["earliest"]
    assert (c.start - kw["earliest"]) % kw["step"] == timedelta(0)
    if kw["risk_mode"] is RiskMode.CONSERVATIVE:
        assert c.finish_p90 <= kw["latest"] + timedelta(microseconds=1)
        assert p.capacity == "on-demand"
    else:
        assert c.finish_p50 <= kw["latest"] + timedelta(microseconds=1)
    for x in p.candidates + [p.baseline]:
        for score in (x.risk, x.slack):
            assert 0.0 <= score <= 1.0
        assert x.carbon >= -1.0  # relative to the baseline: -1 would be a zero-carbon start
    assert p.baseline.carbon == 0.0
    allowed = [c, p.baseline] + [x for x in p.candidates if passes_gate(x, p.baseline)]
    assert c.objective <= min(x.objective for x in allowed) + 1e-9
    assert 1 <= p.feasible_count <= p.total_count


@SETTINGS
@given(scenarios(), st.floats(min_value=0.05, max_value=5.0))
def test_more_carbon_weight_never_picks_a_dirtier_start(kw, extra):
    w = kw["weights"]
    a = plan_schedule(**kw)
    b = plan_schedule(**{**kw, "weights": Weights(w.carbon + extra, w.risk, w.slack)})
    assert b.chosen.carbon <= a.chosen.carbon + 1e-6
    assert b.chosen.emissions_g <= a.chosen.emissions_g + 1e-6 * max(1.0, a.chosen.emissions_g)


@SETTINGS
@given(scenarios(), st.integers(min_value=-400 * 24 * 60, max_value=400 * 24 * 60))
def test_shifting_window_and_series_shifts_the_choice(kw, minutes):
    delta = timedelta(minutes=minutes)
    a = plan_schedule(**kw)
    b = plan_schedule(
        **{
            **kw,
            "earliest": kw["earliest"] + delta,
            "latest": kw["latest"] + delta,
            "series": kw["series"].shift(delta),
        }
    )
    assert b.chosen.start == a.chosen.start + delta
    assert b.chosen.emissions_g == a.chosen.emissions_g


# --------------------------------------------------------------------------- GSF Carbon Aware SDK


def gsf_optimal_start(
    times: list[datetime],
    values: list[float],
    durations_min: list[float],
    data_start: datetime,
    data_end: datetime,
    window_min: float,
) -> datetime:
    """The Carbon Aware SDK's forecast optimum, re-implemented from its description (PROVIDERS.md):
    for each data point whose timestamp is in [dataStartAt, dataEndAt], the coverage-weighted average
    intensity over [t, t + windowSize); windows running past the data are dropped; the minimum wins,
    ties going to the earliest."""
    best_t, best_v = None, None
    window = timedelta(minutes=window_min)
    for i, t in enumerate(times):
        if not data_start <= t <= data_end:
            continue
        end = t + window
        total, covered = 0.0, timedelta(0)
        for j in range(i, len(times)):
            a = times[j]
            b = a + timedelta(minutes=durations_min[j])
            if a >= end:
                break
            overlap = min(b, end) - max(a, t)
            total += values[j] * overlap.total_seconds()
            covered += overlap
        if covered < window:
            continue  # not enough data for a full window
        avg = total / window.total_seconds()
        if best_v is None or avg < best_v:
            best_t, best_v = t, avg
    assert best_t is not None
    return best_t


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([5, 15, 60]),
    st.lists(st.integers(min_value=0, max_value=600), min_size=6, max_size=120),
    st.data(),
)
def test_carbon_only_fixed_runtime_equals_carbon_aware_sdk_optimum(step_min, values, data):
    n = len(values)
    step = timedelta(minutes=step_min)
    series = CarbonSeries(BASE, step, np.array(values, dtype=float))
    times = series.times()
    job_min = data.draw(st.integers(min_value=1, max_value=n * step_min // 2), label="job minutes")
    last_start_idx = data.draw(st.integers(min_value=0, max_value=(n * step_min - job_min) // step_min))
    latest = times[last_start_idx] + timedelta(minutes=job_min)
    p = plan_schedule(
        earliest=BASE,
        latest=latest,
        p50_sec=job_min * 60.0,
        p90_sec=job_min * 60.0,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.CONSERVATIVE,
        weights=Weights(1, 0, 0),
        step=step,
        policy=UNGATED,  # the SDK has no skill gate: it takes any saving
    )
    want = gsf_optimal_start(
        times, values, [step_min] * n, BASE, latest - timedelta(minutes=job_min), job_min
    )
    assert p.chosen.start == want


# --------------------------------------------------------------------------- several regions (plan_regions)


def _region_series(draw, like: CarbonSeries, shift_steps: int) -> CarbonSeries:
    """Another region's series over the same span, possibly on a grid starting ``shift_steps`` earlier."""
    n = len(like) + shift_steps
    values = draw(st.lists(st.integers(min_value=0, max_value=900), min_size=n, max_size=n))
    return CarbonSeries(like.start - like.step * shift_steps, like.step, np.array(values, dtype=float))


@st.composite
def region_scenarios(draw):
    kw = draw(scenarios())
    home = kw.pop("series")
    power = kw.pop("power_kw")
    spot = kw.pop("spot_interruption_prob")
    others = [
        RegionOption(
            f"r{i}",
            _region_series(draw, home, draw(st.sampled_from([0, 0, 3]))),
            power,
            draw(st.sampled_from([0.0, 0.02, 0.3, 1.0])),
            selectable=draw(st.booleans()) if i else True,
        )
        for i in range(1, draw(st.integers(min_value=1, max_value=4)) + 1)
    ]
    return kw, RegionOption("home", home, power, spot), others


@SETTINGS
@given(region_scenarios())
def test_adding_regions_never_raises_the_chosen_emissions_with_carbon_only_weights(sc):
    kw, home, others = sc
    kw["weights"] = Weights(1.0, 0.0, 0.0)
    alone = plan_regions(options=[home], **kw)
    joint = plan_regions(options=[home, *others], **kw)
    assert joint.chosen.emissions_g <= alone.chosen.emissions_g * (1 + 1e-9) + 1e-9
    # the baseline is the home region's, whatever else is allowed
    assert joint.baseline == alone.baseline


@SETTINGS
@given(region_scenarios())
def test_joint_plan_never_chooses_an_unselectable_region_and_scores_like_one_region(sc):
    kw, home, others = sc
    joint = plan_regions(options=[home, *others], **kw)
    allowed = {"home"} | {o.region for o in others if o.selectable}
    assert {c.region for c in joint.candidates} <= allowed
    assert joint.region in allowed
    assert set(joint.regions) == allowed
    # each candidate's emissions are its own region's, as a one-region plan at that start computes them
    by_region = {o.region: o for o in [home, *others]}
    for c in joint.candidates[:5]:
        o = by_region[c.region]
        single = plan_schedule(
            **{**kw, "earliest": c.start, "fixed_start": True, "top_k": 1},
            series=o.series,
            power_kw=o.power_kw,
            region=o.region,
        )
        assert abs(single.chosen.emissions_g - c.emissions_g) <= 1e-6 * max(1.0, c.emissions_g)


@SETTINGS
@given(region_scenarios())
def test_a_home_only_joint_plan_is_the_one_region_plan(sc):
    kw, home, others = sc
    unselectable = [
        RegionOption(o.region, o.series, o.power_kw, o.spot_interruption_prob, False) for o in others
    ]
    joint = plan_regions(options=[home, *unselectable], **kw)
    alone = plan_schedule(
        **kw, series=home.series, power_kw=home.power_kw, spot_interruption_prob=home.spot_interruption_prob
    )
    assert joint.chosen.start == alone.chosen.start
    assert joint.chosen.emissions_g == alone.chosen.emissions_g
    assert joint.capacity == alone.capacity
    assert joint.chosen.region == "home" and alone.chosen.region is None
