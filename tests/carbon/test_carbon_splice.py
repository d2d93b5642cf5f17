"""Splicing a live forecast onto a continuation: level-matched, same signal, wider sigma (issue 11 item 5).

The seam case of the issue: a live forecast at ~550 g/kWh for 24 h, in a region whose climatology sits near
180 g/kWh. Continued by the raw climatology, the planner jumps past the live horizon and claims a large
saving; continued by a level-matched profile, it does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbon import CarbonService, MemoryTTLCache
from carbon.embedded import embedded_series
from carbon.keyed import LBS_PER_MWH_TO_G_PER_KWH
from core.settings import Settings
from scheduling.carbon import CarbonSeries
from scheduling.scoring import RiskMode, Weights, plan_schedule
from tests.support.carbon_fake_server import FakeCarbonApi

T0 = datetime(2026, 11, 25, 18, tzinfo=UTC)
STEP = timedelta(minutes=15)
HORIZON = T0 + timedelta(hours=24)
LATEST = T0 + timedelta(hours=30)
CARBON_ONLY = Weights(carbon=1.0, risk=0.0, slack=0.0)


@pytest.fixture(scope="module")
def api():
    server = FakeCarbonApi()
    yield server
    server.stop()


def live_shape(hours: int, step_min: int) -> tuple[list[datetime], np.ndarray]:
    """~550 g/kWh with the region's own daily shape (a live forecast at a much higher level)."""
    clim, _ = embedded_series("eu-west-2", T0, T0 + timedelta(hours=hours), timedelta(minutes=step_min))
    vals = 550.0 * clim.values / clim.values.mean()
    return clim.times(), vals


def plan(series: CarbonSeries):
    return plan_schedule(
        earliest=T0,
        latest=LATEST,
        p50_sec=3600,
        p90_sec=3600,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.NEUTRAL,
        weights=CARBON_ONLY,
    )


def serve_em(api, hours: int) -> None:
    times, vals = live_shape(hours, 60)
    body = {
        "zone": "GB",
        "forecast": [
            {"carbonIntensity": round(float(v), 1), "datetime": t.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
            for t, v in zip(times, vals, strict=True)
        ],
    }
    api.route("/v3/carbon-intensity/forecast", (200, body))


def serve_watttime(api, hours: int) -> None:
    times, vals = live_shape(hours, 5)
    body = {
        "data": [
            {"point_time": t.isoformat(), "value": round(float(v) / LBS_PER_MWH_TO_G_PER_KWH, 2)}
            for t, v in zip(times, vals, strict=True)
        ],
        "meta": {"region": "UK", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh"},
    }
    api.route("/login", (200, {"token": "t"}))
    api.route("/v3/forecast", (200, body))


def service(api, provider: str) -> CarbonService:
    s = Settings(
        _env_file=None,
        carbon_provider=provider,
        electricitymaps_api_key="k",
        electricitymaps_url=api.url,
        watttime_username="u",
        watttime_password="p",
        watttime_url=api.url,
        watttime_regions={"eu-west-2": "UK"},
    )
    return CarbonService(s, cache=MemoryTTLCache(), now=T0)


@pytest.mark.parametrize(("provider", "signal"), [("electricitymaps", "average"), ("watttime", "marginal")])
def test_live_550_continued_by_a_179_climatology_does_not_move_past_the_horizon(api, provider, signal):
    api.reset()
    (serve_em if provider == "electricitymaps" else serve_watttime)(api, 24)
    series, notes = service(api, provider).get_series("eu-west-2", T0, LATEST, STEP)
    assert series.signal == signal and "beyond it" in notes[0]

    # what main did: the live part followed by the raw climatology
    clim, _ = embedded_series("eu-west-2", T0, LATEST, STEP)
    assert clim.values.mean() < 0.5 * series.values[: series.index_of(HORIZON)].mean()
    naive = np.where(np.arange(len(clim)) < series.index_of(HORIZON), series.values, clim.values)
    jumped = plan(CarbonSeries(T0, STEP, naive)).chosen
    assert jumped.start + timedelta(hours=1) > HORIZON and jumped.saving_vs_earliest_pct > 40

    chosen = plan(series).chosen
    assert chosen.start + timedelta(hours=1) <= HORIZON  # decided inside the live forecast
    i = series.index_of(HORIZON)
    live_tail, cont_head = series.values[i - 8 : i].mean(), series.values[i : i + 8].mean()
    assert abs(cont_head - live_tail) / live_tail < 0.25  # no level jump at the seam
    assert np.all(series.sigma[i:] / series.values[i:] >= series.sigma[i - 1] / series.values[i - 1])


def test_short_live_forecast_scaled_climatology_keeps_the_level(api):
    api.reset()
    serve_em(api, 12)
    end = T0 + timedelta(hours=20)
    series, notes = service(api, "electricitymaps").get_series("eu-west-2", T0, end, STEP)
    assert "2023 climatology scaled x" in notes[0]
    i = series.index_of(T0 + timedelta(hours=12))
    clim, _ = embedded_series("eu-west-2", T0, end, STEP)
    # the continuation is the climatology's shape at the live level: ratio to it is one constant
    ratio = series.values[i:] / clim.values[i:]
    assert ratio.min() == pytest.approx(ratio.max()) and ratio[0] > 2
    assert series.sigma[i] >= 0.3 * series.values[i] - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    offset_q=st.integers(-8, 8),
    hours=st.sampled_from([1, 3, 12, 24, 48]),
    step_min=st.sampled_from([5, 15, 30, 60]),
    actual_hours=st.sampled_from([0, 2, 30, 100]),
    signal=st.sampled_from(["average", "marginal"]),
    g0_q=st.integers(-400, 400),
    len_q=st.integers(1, 400),
    region=st.sampled_from(["eu-west-2", "eu-north-1", "us-east-1"]),
)
def test_any_live_shape_gives_a_finite_series_on_exactly_the_window(
    offset_q, hours, step_min, actual_hours, signal, g0_q, len_q, region
):
    from carbon.base import LiveData
    from carbon.keyless import UkCarbonIntensity

    s = Settings(_env_file=None, carbon_provider="embedded")
    fstart = T0 + offset_q * STEP
    step = timedelta(minutes=step_min)
    n = int(timedelta(hours=hours) / step)
    fc = CarbonSeries(fstart, step, 300 + 50 * np.sin(np.arange(n)), signal=signal)
    act = None
    if actual_hours:
        h = timedelta(hours=1)
        act = CarbonSeries(fstart - actual_hours * h, h, np.full(actual_hours, 200.0), signal=signal)
    g0 = T0 + g0_q * STEP
    g1 = g0 + len_q * STEP
    svc = CarbonService(s, cache=MemoryTTLCache(), now=T0)
    out, _ = svc._assemble(
        LiveData("x", T0, fc, act), UkCarbonIntensity(s).relative_sigma, region, g0, g1, STEP, "x"
    )
    assert out.start == g0 and out.end == g1 and out.signal == signal
    assert np.isfinite(out.values).all() and np.all(out.values >= 0)
    assert out.sigma is not None and np.isfinite(out.sigma).all() and np.all(out.sigma >= 0)
