"""Keyless providers (GB Carbon Intensity API, Energy-Charts) and the ``auto`` chain, over real HTTP
against a local fake server serving the documented shapes (tests/fixtures/carbon). No internet."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from carbon import CarbonService, MemoryTTLCache
from core.settings import Settings
from scheduling.scoring import RiskMode, Weights, plan_schedule
from tests.support.carbon_fake_server import HANG, FakeCarbonApi

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "carbon"
T0 = datetime(2026, 11, 25, 18, tzinfo=UTC)
STEP = timedelta(minutes=15)


def fixture(name: str):
    return json.loads((FIX / name).read_text())


@pytest.fixture(scope="module")
def api():
    server = FakeCarbonApi()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh(api):
    api.reset()
    yield
    api.reset()


def settings(api: FakeCarbonApi, **kw) -> Settings:
    base = {
        "carbon_provider": "auto",
        "uk_carbon_intensity_url": api.url,
        "energy_charts_url": api.url,
        "electricitymaps_url": api.url,
        "carbon_http_timeout_sec": 0.5,
        "carbon_actuals_days": 2,
    }
    return Settings(_env_file=None, **(base | kw))


def service(api, **kw) -> CarbonService:
    return CarbonService(settings(api, **kw), cache=MemoryTTLCache(), now=T0)


def uk_routes(api: FakeCarbonApi) -> None:
    def intensity(path, query):
        if path.endswith("/fw48h"):
            return 200, fixture("uk_intensity_fw48h_national.json")
        return 200, fixture("uk_intensity_history_national.json")

    api.route("/intensity/", intensity)


def ec_routes(api: FakeCarbonApi, body=None) -> None:
    api.route("/co2eq", (200, body if body is not None else fixture("energy_charts_co2eq_de.json")))


# --------------------------------------------------------------------------- GB


def test_gb_national_forecast_actuals_nulls_and_gaps(api):
    uk_routes(api)
    s, notes = service(api).get_series("eu-west-2", T0, T0 + timedelta(hours=40), STEP)
    rows = fixture("uk_intensity_fw48h_national.json")["data"]
    by_time = {r["from"]: r["intensity"] for r in rows}
    assert notes == [notes[0]] and notes[0].startswith("uk-carbon-intensity for national (covers the window)")
    # the first half hour was measured: the actual wins, with sigma 0
    assert s.value_at(T0) == by_time["2026-11-25T18:00Z"]["actual"] and s.sigma[0] == 0.0
    t = T0 + timedelta(hours=5)
    assert s.value_at(t) == by_time[t.strftime("%Y-%m-%dT%H:%MZ")]["forecast"]
    # points 20-21 are missing and point 30 is null: interpolated between their neighbours
    a, b = by_time["2026-11-26T03:30Z"]["forecast"], by_time["2026-11-26T05:00Z"]["forecast"]
    gap = s.value_at(T0 + timedelta(hours=10, minutes=15))
    assert min(a, b) <= gap <= max(a, b)
    assert np.isfinite(s.values).all() and np.all(s.sigma[4:] > 0)
    assert s.sigma[-1] / s.values[-1] > s.sigma[4] / s.values[4]  # the error grows with lead time
    assert s.signal == "average"
    assert sorted(set(api.paths())) == [
        "/intensity/2026-11-23T18:00Z/2026-11-25T18:00Z",
        "/intensity/2026-11-25T18:00Z/fw48h",
    ]


def test_gb_regional_london(api):
    api.route("/regional/intensity/", (200, fixture("uk_regional_fw48h_london.json")))
    svc = service(api, uk_carbon_intensity_regions={"eu-west-2": 13})
    s, notes = svc.get_series("eu-west-2", T0, T0 + timedelta(hours=24), STEP)
    assert api.paths() == ["/regional/intensity/2026-11-25T18:00Z/fw48h/regionid/13"]
    first = fixture("uk_regional_fw48h_london.json")["data"]["data"][0]["intensity"]["forecast"]
    assert s.values[0] == first and "uk-carbon-intensity for regionid-13" in notes[0]


def test_gb_beyond_48h_continues_with_recent_profile(api):
    uk_routes(api)
    s, notes = service(api).get_series("eu-west-2", T0, T0 + timedelta(hours=60), STEP)
    assert "beyond it the daily profile + decaying anomaly" in notes[0]
    live_end = T0 + timedelta(hours=48)
    i = s.index_of(live_end)
    assert np.all(s.sigma[i:] >= 0.3 * s.values[i:] - 1e-9)  # wider beyond the live horizon
    seam_live = s.values[i - 12 : i].mean()
    seam_next = s.values[i : i + 12].mean()
    assert abs(seam_next - seam_live) / seam_live < 0.35  # no level jump at the seam


# --------------------------------------------------------------------------- Energy-Charts


def test_energy_charts_actuals_and_forecast(api):
    ec_routes(api)
    start = T0 - timedelta(hours=6)  # a window that starts in the past gets the actuals
    s, notes = service(api).get_series("eu-central-1", start, T0 + timedelta(hours=30), STEP)
    body = fixture("energy_charts_co2eq_de.json")
    ts = body["unix_seconds"]
    assert api.requests[0][1] == {"country": "de", "start": "2026-11-23", "end": "2026-11-28"}
    k = ts.index(int((T0 - timedelta(hours=3)).timestamp()))
    assert s.value_at(T0 - timedelta(hours=3)) == body["co2eq"][k] and s.sigma[s.index_of(T0) - 1] == 0
    k = ts.index(int((T0 + timedelta(hours=2)).timestamp()))
    assert s.value_at(T0 + timedelta(hours=2)) == body["co2eq_forecast"][k]
    assert "energy-charts for de (covers the window)" in notes[0]


def test_energy_charts_window_past_its_forecast_is_spliced(api):
    ec_routes(api)
    s, notes = service(api).get_series("eu-central-1", T0, T0 + timedelta(hours=60), STEP)
    assert "energy-charts for de covers" in notes[0] and "beyond it" in notes[0]
    assert np.isfinite(s.values).all() and s.covers(T0, T0 + timedelta(hours=60))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"unix_seconds": [], "co2eq": [], "co2eq_forecast": []}, "no co2eq data for 'de'"),
        (
            {"unix_seconds": [1, 2, 3], "co2eq": [1.0, 2.0], "co2eq_forecast": [None] * 3},
            "unexpected response",
        ),
        ({"timestamps": [1, 2], "co2": [1, 2]}, "unexpected response shape"),
        ({"unix_seconds": [1, 2], "co2eq": ["a", "b"]}, "unexpected response shape"),
        ({"unix_seconds": [1764090000, 1764090900], "co2eq": [None, None]}, "only nulls"),
    ],
)
def test_energy_charts_no_data_and_changed_schema_fall_back(api, body, why):
    ec_routes(api, body)
    s, notes = service(api).get_series("eu-central-1", T0, T0 + timedelta(hours=6), STEP)
    assert (
        why in notes[0] and "energy-charts unavailable" in notes[0] and "using the embedded data" in notes[0]
    )
    assert "embedded: 2023 climatology for eu-central-1" in notes[1]


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("status", "why"), [(500, "HTTP 500 from 127.0.0.1"), (HANG, "timed out")])
def test_http_errors_and_timeouts_fall_back_and_are_cached(api, status, why):
    api.route("/intensity/", (status, {"error": "boom"}))
    svc = service(api, carbon_http_timeout_sec=0.3)
    s, notes = svc.get_series("eu-west-2", T0, T0 + timedelta(hours=6), STEP)
    assert notes[0] == f"uk-carbon-intensity unavailable ({why}): using the embedded data"
    assert s.covers(T0, T0 + timedelta(hours=6))
    n = len(api.requests)
    _, notes = svc.get_series("eu-west-2", T0, T0 + timedelta(hours=6), STEP)
    assert len(api.requests) == n and "(cached failure)" in notes[0]  # an outage costs one call a minute


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"items": []}},
        {"data": [{"from": "2026-11-25T18:00Z", "to": "2026-11-25T18:30Z", "intensity": 180}]},
        {"results": []},
    ],
)
def test_gb_changed_schema_falls_back(api, body):
    api.route("/intensity/", (200, body))
    _, notes = service(api).get_series("eu-west-2", T0, T0 + timedelta(hours=6), STEP)
    assert "uk-carbon-intensity unavailable (unexpected response shape" in notes[0]


# --------------------------------------------------------------------------- auto


def test_auto_chain_per_region(api):
    svc = service(api)
    assert svc.chain("eu-west-2") == ["uk-carbon-intensity", "embedded"]
    assert svc.chain("eu-central-1") == ["energy-charts", "embedded"]
    assert svc.chain("eu-north-1") == ["energy-charts", "embedded"]
    assert svc.chain("us-east-1") == ["embedded"]
    keyed = service(api, electricitymaps_api_key="k")
    assert keyed.chain("eu-central-1") == ["electricitymaps", "energy-charts", "embedded"]
    assert keyed.chain("us-east-1") == ["electricitymaps", "embedded"]  # shipped table: US-MIDA-PJM
    assert service(api, carbon_provider="embedded").chain("eu-west-2") == ["embedded"]
    assert service(api, carbon_provider="energy-charts").chain("us-east-1") == ["energy-charts", "embedded"]
    with pytest.raises(ValueError, match="unknown carbon provider"):
        service(api, carbon_provider="nope").chain("eu-west-2")


def test_auto_without_live_source_says_so(api):
    _, notes = service(api).get_series("us-east-1", T0, T0 + timedelta(hours=3), STEP)
    assert notes[0].startswith(
        "auto: no keyed provider configured and no keyless public forecast for us-east-1"
    )
    assert api.requests == []


def test_auto_keyed_failure_falls_to_keyless_and_the_reason_is_in_the_rationale(api):
    api.route("/v3/carbon-intensity/forecast", (503, {"error": "down"}))
    ec_routes(api)
    svc = service(api, electricitymaps_api_key="k")
    series, notes = svc.get_series("eu-central-1", T0, T0 + timedelta(hours=12), STEP)
    assert notes[0] == "electricitymaps unavailable (HTTP 503 from 127.0.0.1): using energy-charts"
    assert "energy-charts for de" in notes[1]
    plan = plan_schedule(
        earliest=T0,
        latest=T0 + timedelta(hours=12),
        p50_sec=3600,
        p90_sec=3600,
        series=series,
        power_kw=1.0,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        notes=notes,
    )
    assert "electricitymaps unavailable (HTTP 503" in plan.rationale


def test_planning_glue_uses_auto_and_db_cache(api, tmp_path):
    from core.db import Database
    from core.migrate import upgrade
    from services.planning import carbon_series

    uk_routes(api)
    s = settings(api, data_dir=tmp_path)
    upgrade(s)
    db = Database(s)
    try:
        for _ in range(2):
            with db.session() as session:
                series, notes = carbon_series(s, "eu-west-2", T0, T0 + timedelta(hours=6), session)
        assert "uk-carbon-intensity for national" in notes[0]
        first = fixture("uk_intensity_fw48h_national.json")["data"][0]["intensity"]["actual"]
        assert series.value_at(T0) == first  # the fixture's first actual (the wall clock is later)
        assert sum(p.endswith("/fw48h") for p in api.paths()) == 1  # one call, then the DB cache
    finally:
        db.dispose()


def test_energy_charts_actuals_only_forecast_from_recent_profile_and_anomaly(api):
    """Item 3: with recent actuals but no published forecast, the forecast is the recent daily profile plus
    the decaying anomaly, at the recent level, not 2023's climatology."""
    body = fixture("energy_charts_co2eq_de.json")
    body = {
        "unix_seconds": body["unix_seconds"],
        "co2eq": [None if v is None else 2 * v for v in body["co2eq"]],
    }
    ec_routes(api, body)
    s, notes = service(api).get_series("eu-central-1", T0, T0 + timedelta(hours=24), STEP)
    assert "beyond it the daily profile + decaying anomaly of the last 48 h" in notes[0]
    from carbon.embedded import embedded_series

    clim, _ = embedded_series("eu-central-1", T0, T0 + timedelta(hours=24), STEP)
    assert s.values.mean() > 1.5 * clim.values.mean() and np.all(s.sigma > 0)


def test_an_offline_provider_is_warned_about_once_per_interval_not_per_request(caplog, monkeypatch):
    """Issue 21 item 12: a provider that is down (a closed port) logs one WARNING per interval, whatever
    the number of plans and previews meanwhile; the next one counts the failures in between."""
    import logging

    import carbon.service as service
    from cli.devstack import free_port
    from core.settings import Settings

    monkeypatch.setattr(service, "_offline_seen", {})
    clock = [1000.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    dead = f"http://127.0.0.1:{free_port()}"
    s = Settings(
        _env_file=None,
        carbon_provider="uk-carbon-intensity",
        uk_carbon_intensity_url=dead,
        energy_charts_url=dead,
    )
    t0 = datetime(2026, 1, 5, tzinfo=UTC)

    def warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "carbon.service" and r.levelno == logging.WARNING
        ]

    with caplog.at_level(logging.DEBUG, logger="carbon.service"):
        for _ in range(5):  # fresh caches: each request really tries (and fails) to reach the provider
            _, notes = CarbonService(s, cache=MemoryTTLCache()).get_series(
                "eu-west-2", t0, t0 + timedelta(hours=2)
            )
            assert notes[0].startswith("uk-carbon-intensity unavailable")  # every answer still says why
        assert len(warnings()) == 1 and "uk-carbon-intensity" in warnings()[0]
        s2 = Settings(_env_file=None, carbon_provider="energy-charts", energy_charts_url=dead)
        CarbonService(s2, cache=MemoryTTLCache()).get_series("eu-central-1", t0, t0 + timedelta(hours=2))
        assert len(warnings()) == 2 and "energy-charts" in warnings()[1]  # per provider
        clock[0] += service.OFFLINE_WARNING_INTERVAL_SEC
        CarbonService(s, cache=MemoryTTLCache()).get_series("eu-west-2", t0, t0 + timedelta(hours=2))
        assert len(warnings()) == 3 and "4 more failures since the last warning" in warnings()[2]
