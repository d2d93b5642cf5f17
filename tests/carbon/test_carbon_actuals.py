"""Measured intensity of a past interval (carbon/actuals.py): only actuals answer, never a forecast or the
embedded climatology; each provider's history endpoint is parsed (MockTransport, documented shapes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from carbon import measured_series
from scheduling.carbon import embedded_history, zone_for_region
from tests.support.carbon import CFG, Recorder, cfg, client

H = timedelta(hours=1)


def _hourly(t0: datetime, values: list[float]) -> list[datetime]:
    return [t0 + i * H for i in range(len(values))]


def test_embedded_answers_for_2023_only():
    a, b = datetime(2023, 5, 3, 10, 20, tzinfo=UTC), datetime(2023, 5, 3, 12, 5, tzinfo=UTC)
    m = measured_series("eu-central-1", a, b, settings=cfg())
    assert m.series is not None and m.name == "embedded" and "measured" in m.source
    # the integral over the run equals the shipped hourly values, time-weighted
    raw = embedded_history(zone_for_region("eu-central-1"))
    want = sum(
        raw.value_at(t) * (min(t + H, b) - max(t, a)).total_seconds() / 3600
        for t in _hourly(datetime(2023, 5, 3, 10, tzinfo=UTC), [0, 0, 0])
    )
    assert m.series.integral(a, b) == pytest.approx(want, rel=1e-9)
    later = measured_series("eu-central-1", a.replace(year=2026), b.replace(year=2026), settings=cfg())
    assert later.series is None and "climatology, not a measurement" in later.why_not()
    flat = measured_series("ap-south-2", a, b, settings=cfg())  # no hourly series: a flat CCF factor
    assert flat.series is None and "no hourly data" in flat.why_not()


def test_csv_is_actuals_where_it_covers(tmp_path):
    f = tmp_path / "grid.csv"
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    f.write_text("timestamp,g\n" + "".join(f"{(t0 + i * H).isoformat()},{100 + i}\n" for i in range(24)))
    s = cfg(carbon_provider="csv", carbon_csv_path=str(f))
    m = measured_series("eu-central-1", t0 + 2 * H, t0 + 3 * H + timedelta(minutes=30), settings=s)
    assert m.name == "csv" and m.source == "csv grid.csv (actuals)"
    assert m.series.integral(t0 + 2 * H, t0 + 3 * H + timedelta(minutes=30)) == pytest.approx(102 + 103 / 2)
    out = measured_series("eu-central-1", t0 + 23 * H, t0 + 25 * H, settings=s)  # beyond the file
    assert out.series is None  # and the embedded climatology does not stand in for it
    assert "csv: the file covers" in out.why_not() and "embedded:" in out.why_not()


def test_electricitymaps_past_range_skips_estimated_points():
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    pts = [
        {"carbonIntensity": 300 + i, "datetime": t.isoformat(), "isEstimated": i == 5}
        for i, t in enumerate(_hourly(t0, [0] * 12))
    ]

    def past(req: httpx.Request) -> httpx.Response:
        assert req.headers["auth-token"] == "em-key" and req.url.params["zone"] == "DE"
        return httpx.Response(200, json={"zone": "DE", "data": pts})

    rec = Recorder({("GET", "/v3/carbon-intensity/past-range"): past})
    s = CFG.model_copy(update={"carbon_provider": "electricitymaps"})
    with client(rec) as http:
        m = measured_series("eu-central-1", t0 + H, t0 + 3 * H, settings=s, http=http)
        assert m.name == "electricitymaps" and m.series.integral(t0 + H, t0 + 3 * H) == pytest.approx(603)
        # an estimated point is a gap (interpolated like any gap up to 3 h): 5:00 is read between 4 and 6
        g = measured_series("eu-central-1", t0 + 5 * H, t0 + 6 * H, settings=s, http=http)
        assert g.series.integral(t0 + 5 * H, t0 + 6 * H) == pytest.approx(305)
    first = rec.requests[0].url.params
    assert (first["start"], first["end"]) == ("2026-11-24T01:00:00Z", "2026-11-24T03:00:00Z")


def test_watttime_historical_is_marginal_and_converted():
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    pts = [{"point_time": (t0 + i * timedelta(minutes=5)).isoformat(), "value": 1000.0} for i in range(48)]

    def hist(req: httpx.Request) -> httpx.Response:
        assert req.url.params["signal_type"] == "co2_moer" and req.url.params["region"] == "CAISO_NORTH"
        return httpx.Response(200, json={"data": pts, "meta": {"units": "lbs_co2_per_mwh"}})

    rec = Recorder(
        {
            ("GET", "/login"): lambda r: httpx.Response(200, json={"token": "tok"}),
            ("GET", "/v3/historical"): hist,
        }
    )
    s = CFG.model_copy(update={"carbon_provider": "watttime"})
    with client(rec) as http:
        m = measured_series("us-west-1", t0, t0 + 2 * H, settings=s, http=http)
    assert m.name == "watttime" and m.series.signal == "marginal"
    assert m.series.integral(t0, t0 + 2 * H) == pytest.approx(2 * 1000 * 0.45359237)


def test_uk_national_actuals_and_regional_none():
    t0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
    rows = [
        {
            "from": (t0 + i * timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (t0 + (i + 1) * timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 999, "actual": 200 + 10 * i, "index": "moderate"},
        }
        for i in range(6)
    ]
    rec = Recorder(
        {
            ("GET", "/intensity/2026-11-24T10:00Z/2026-11-24T12:30Z"): lambda r: httpx.Response(
                200, json={"data": rows}
            )
        }
    )
    s = cfg(carbon_provider="uk-carbon-intensity", uk_carbon_intensity_url="http://uk.local")
    with client(rec) as http:
        m = measured_series("eu-west-2", t0, t0 + 2 * H, settings=s, http=http)
    assert m.name == "uk-carbon-intensity"
    assert m.series.integral(t0, t0 + 2 * H) == pytest.approx(sum(200 + 10 * i for i in range(4)) / 2)
    regional = cfg(carbon_provider="uk-carbon-intensity", uk_carbon_intensity_regions={"eu-west-2": 13})
    out = measured_series("eu-west-2", t0, t0 + H, settings=regional)
    assert out.series is None and "forecasts only" in out.why_not()


def test_energy_charts_measured_not_forecast():
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    ts = [int((t0 + i * timedelta(minutes=15)).timestamp()) for i in range(16)]
    body = {
        "unix_seconds": ts,
        "co2eq": [400.0] * 8 + [None] * 8,  # measured until 02:00, forecast only after
        "co2eq_forecast": [None] * 8 + [100.0] * 8,
    }
    rec = Recorder({("GET", "/co2eq"): lambda r: httpx.Response(200, json=body)})
    s = cfg(carbon_provider="energy-charts", energy_charts_url="http://ec.local")
    with client(rec) as http:
        ok = measured_series("eu-central-1", t0, t0 + H, settings=s, http=http)
        late = measured_series("eu-central-1", t0 + H, t0 + 3 * H, settings=s, http=http)
    assert ok.series.integral(t0, t0 + H) == pytest.approx(400)
    # the forecast half never counts as measured, and the 2026 climatology does not either
    assert late.series is None and "energy-charts: measured values cover" in late.why_not()


def test_provider_without_history_and_outage_give_reasons():
    t0 = datetime(2026, 11, 24, tzinfo=UTC)
    s = CFG.model_copy(update={"carbon_provider": "carbon-aware-sdk"})
    m = measured_series("us-east-1", t0, t0 + H, settings=s)
    assert m.series is None and "carbon-aware-sdk publishes no measured history" in m.why_not()
    rec = Recorder({("GET", "/v3/carbon-intensity/past-range"): lambda r: httpx.Response(503)})
    with client(rec) as http:
        down = measured_series(
            "eu-central-1",
            t0,
            t0 + H,
            settings=CFG.model_copy(update={"carbon_provider": "electricitymaps"}),
            http=http,
        )
    assert down.series is None and "electricitymaps: HTTP 503" in down.why_not()
