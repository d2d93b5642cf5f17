"""Splicing a live forecast onto a continuation: level-matched, same signal, wider sigma (issue 11 item 5).

The seam case of the issue: a live forecast at ~550 g/kWh for 24 h, in a region whose climatology sits near
180 g/kWh. Continued by the raw climatology, the planner jumps past the live horizon and claims a large
saving; continued by a level-matched profile, it does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carbon import CarbonService, MemoryTTLCache
from carbon.embedded import embedded_series
from carbon.keyed import LBS_PER_MWH_TO_G_PER_KWH
from core.settings import Settings
from scheduling.carbon import CarbonSeries
from scheduling.scoring import RiskMode, Weights, plan_schedule
from tests.carbon_fake_server import FakeCarbonApi

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
