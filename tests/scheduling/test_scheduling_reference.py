"""The vectorised planner and the straightforward per-candidate reference (bench/) choose the same start."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.carbon import CarbonSeries, embedded_history
from scheduling.scoring import UNGATED, RiskMode, Weights, plan_schedule

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.reference_plan import reference_choice  # noqa: E402


@pytest.mark.parametrize("mode", list(RiskMode))
@pytest.mark.parametrize("weights", [Weights(), Weights(1, 0, 0), Weights(0.2, 0.7, 0.1)])
def test_bench_scenario_same_choice(mode, weights):
    """The benchmark's case: 7-day window, 5-minute grid (2,016 starts), 6-hour job."""
    series = embedded_history("DE").resample(timedelta(minutes=5))
    e = datetime(2023, 5, 2, 3, 20, tzinfo=UTC)
    latest = e + timedelta(days=7)
    kw = dict(
        earliest=e,
        latest=latest,
        p50_sec=6 * 3600.0,
        p90_sec=7.5 * 3600.0,
        series=series,
        power_kw=0.2,
        risk_mode=mode,
        weights=weights,
        step=timedelta(minutes=5),
    )
    plan = plan_schedule(**kw, policy=UNGATED)
    start, emissions = reference_choice(**kw)
    assert plan.total_count == 2016
    assert plan.chosen.start == start
    assert plan.chosen.emissions_g == pytest.approx(emissions, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(list(RiskMode)),
    st.sampled_from([5, 15, 60]),
    st.floats(0.25, 30.0),
    st.sampled_from([1.0, 1.3, 2.0]),
)
def test_random_scenarios_same_choice(seed, mode, grid_min, job_h, spread):
    rng = np.random.default_rng(seed)
    series = CarbonSeries(
        datetime(2026, 1, 1, tzinfo=UTC), timedelta(minutes=30), rng.uniform(20, 700, 400).round(1)
    )
    e = series.start + timedelta(minutes=int(rng.integers(0, 600)))
    latest = e + timedelta(hours=job_h * spread + float(rng.uniform(0, 100)))
    if latest > series.end:
        return
    w = Weights(*rng.uniform(0, 1, 3))
    kw = dict(
        earliest=e,
        latest=latest,
        p50_sec=job_h * 3600,
        p90_sec=job_h * 3600 * spread,
        series=series,
        power_kw=1.0,
        risk_mode=mode,
        weights=w,
        step=timedelta(minutes=grid_min),
    )
    assert plan_schedule(**kw, policy=UNGATED).chosen.start == reference_choice(**kw)[0]
