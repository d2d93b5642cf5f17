"""Keyed carbon providers (carbon/keyed.py) against documented-shape responses via httpx.MockTransport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from carbon import CarbonProviderError, MemoryTTLCache
from carbon import keyed as cc
from core.settings import Settings
from tests.support.carbon import CFG, STEP, T0, Recorder, cfg, client, fixture, get_series


@pytest.fixture(autouse=True)
def _fresh_tokens():
    cc._WATTTIME_TOKENS.clear()
    yield
    cc._WATTTIME_TOKENS.clear()


def test_electricitymaps_forecast_auth_zone_mapping_and_values():
    def forecast(req):
        assert req.headers["auth-token"] == "em-key"
        assert req.url.params["zone"] == "DE"  # eu-central-1 -> DE from aws-region-zones.csv
        return httpx.Response(200, json=fixture("electricitymaps_forecast_DE.json"))

    rec = Recorder({("GET", "/v3/carbon-intensity/forecast"): forecast})
    series, notes = get_series(
        "electricitymaps",
        "eu-central-1",
        T0,
        T0 + timedelta(hours=24),
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    raw = fixture("electricitymaps_forecast_DE.json")["forecast"]
    assert series.start == T0 and series.step == STEP and len(series) == 96
    assert series.values[0] == raw[0]["carbonIntensity"] and series.values[4] == raw[1]["carbonIntensity"]
    assert "electricitymaps for DE (covers the window)" in notes[0]


def test_watttime_login_bearer_and_unit_conversion():
    login_calls = []

    def login(req):
        login_calls.append(req)
        assert req.headers["authorization"].startswith("Basic ")
        return httpx.Response(200, json=fixture("watttime_login.json"))

    def forecast(req):
        token = fixture("watttime_login.json")["token"]
        assert req.headers["authorization"] == f"Bearer {token}"
        assert req.url.params["region"] == "CAISO_NORTH" and req.url.params["signal_type"] == "co2_moer"
        return httpx.Response(200, json=fixture("watttime_forecast_CAISO_NORTH.json"))

    rec = Recorder({("GET", "/login"): login, ("GET", "/v3/forecast"): forecast})
    series, notes = get_series(
        "watttime",
        "us-west-1",
        T0,
        T0 + timedelta(hours=2),
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    raw = [p["value"] for p in fixture("watttime_forecast_CAISO_NORTH.json")["data"]]
    # 5-minute lbs/MWh points averaged onto 15 minutes and converted to g/kWh
    assert series.values[0] == pytest.approx(np.mean(raw[:3]) * 0.45359237)
    assert len(login_calls) == 1


def test_watttime_relogin_on_401():
    state = {"n": 0}

    def login(req):
        state["n"] += 1
        return httpx.Response(200, json={"token": f"t{state['n']}"})

    def forecast(req):
        if req.headers["authorization"] == "Bearer t1":
            return httpx.Response(401, json={"error": "expired"})
        return httpx.Response(200, json=fixture("watttime_forecast_CAISO_NORTH.json"))

    rec = Recorder({("GET", "/login"): login, ("GET", "/v3/forecast"): forecast})
    series, _ = get_series(
        "watttime",
        "us-west-1",
        T0,
        T0 + timedelta(hours=1),
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    assert state["n"] == 2 and len(series) == 4


def test_carbon_aware_sdk_forecast():
    def forecast(req):
        assert req.url.params["location"] == "eastus"
        return httpx.Response(200, json=fixture("carbon_aware_sdk_forecast_eastus.json"))

    rec = Recorder({("GET", "/emissions/forecasts/current"): forecast})
    series, notes = get_series(
        "carbon-aware-sdk",
        "us-east-1",
        T0,
        T0 + timedelta(hours=8),
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    raw = [p["value"] for p in fixture("carbon_aware_sdk_forecast_eastus.json")[0]["forecastData"]]
    assert len(series) == 32
    assert series.values[1] == pytest.approx(np.mean(raw[3:6]))
    assert "covers the window" in notes[0]


def test_cache_serves_thousands_of_plans_with_one_call():
    rec = Recorder(
        {
            ("GET", "/v3/carbon-intensity/forecast"): lambda r: httpx.Response(
                200, json=fixture("electricitymaps_forecast_DE.json")
            )
        }
    )
    cache = MemoryTTLCache()
    http = client(rec)
    for i in range(200):
        get_series(
            "electricitymaps",
            "eu-central-1",
            T0 + timedelta(minutes=i),
            T0 + timedelta(hours=12),
            STEP,
            cache=cache,
            http=http,
            config=CFG,
        )
    assert len(rec.requests) == 1


def test_cache_ttl_expiry():
    now = [0.0]
    cache = MemoryTTLCache(clock=lambda: now[0])
    cache.put("k", b"v", 10)
    assert cache.get("k") == b"v"
    now[0] = 11.0
    assert cache.get("k") is None


def test_custom_cache_object_is_used():
    class DictCache:
        def __init__(self):
            self.d, self.ttls = {}, {}

        def get(self, key):
            return self.d.get(key)

        def put(self, key, value, ttl_sec):
            self.d[key], self.ttls[key] = value, ttl_sec

    cache = DictCache()
    rec = Recorder(
        {
            ("GET", "/v3/carbon-intensity/forecast"): lambda r: httpx.Response(
                200, json=fixture("electricitymaps_forecast_DE.json")
            )
        }
    )
    get_series(
        "electricitymaps",
        "eu-central-1",
        T0,
        T0 + timedelta(hours=3),
        STEP,
        cache=cache,
        http=client(rec),
        config=CFG,
    )
    (key,) = cache.d
    assert key == "carbon:v2:electricitymaps:DE" and cache.ttls[key] == 900
    # a second service with the same cache does not call the provider
    rec2 = Recorder({})
    s, _ = get_series(
        "electricitymaps",
        "eu-central-1",
        T0,
        T0 + timedelta(hours=3),
        STEP,
        cache=cache,
        http=client(rec2),
        config=CFG,
    )
    assert rec2.requests == [] and len(s) == 12


def test_provider_failure_falls_back_to_embedded_with_note():
    rec = Recorder({("GET", "/v3/carbon-intensity/forecast"): lambda r: httpx.Response(503, text="down")})
    cache = MemoryTTLCache()
    series, notes = get_series(
        "electricitymaps",
        "eu-central-1",
        T0,
        T0 + timedelta(hours=6),
        STEP,
        cache=cache,
        http=client(rec),
        config=CFG,
    )
    assert "electricitymaps unavailable (HTTP 503" in notes[0] and "using the embedded data" in notes[0]
    assert series.covers(T0, T0 + timedelta(hours=6)) and series.values.std() >= 0
    # the failure is cached briefly: no second call during an outage
    get_series(
        "electricitymaps",
        "eu-central-1",
        T0,
        T0 + timedelta(hours=6),
        STEP,
        cache=cache,
        http=client(rec),
        config=CFG,
    )
    assert len(rec.requests) == 1


def test_bad_shape_and_missing_credentials_fall_back():
    rec = Recorder({("GET", "/v3/carbon-intensity/forecast"): lambda r: httpx.Response(200, json={"x": 1})})
    _, notes = get_series(
        "electricitymaps",
        "eu-west-2",
        T0,
        T0 + timedelta(hours=1),
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    assert "unexpected response shape" in notes[0]
    _, notes = get_series(
        "watttime",
        "us-west-1",
        T0,
        T0 + timedelta(hours=1),
        STEP,
        cache=MemoryTTLCache(),
        http=client(Recorder({})),
        config=cfg(),
    )
    assert "not configured" in notes[0]


def test_no_fallback_possible_raises():
    with pytest.raises(CarbonProviderError, match="no embedded data"):
        get_series(
            "watttime",
            "CAISO_NORTH",
            T0,
            T0 + timedelta(hours=1),
            STEP,
            cache=MemoryTTLCache(),
            http=client(Recorder({})),
            config=CFG,
        )


def test_window_longer_than_forecast_is_spliced_with_embedded():
    rec = Recorder(
        {
            ("GET", "/v3/carbon-intensity/forecast"): lambda r: httpx.Response(
                200, json=fixture("electricitymaps_forecast_DE.json")
            )
        }
    )
    end = T0 + timedelta(days=5)
    series, notes = get_series(
        "electricitymaps",
        "eu-central-1",
        T0 - timedelta(hours=1),
        end,
        STEP,
        cache=MemoryTTLCache(),
        http=client(rec),
        config=CFG,
    )
    assert series.covers(T0 - timedelta(hours=1), end)
    raw = fixture("electricitymaps_forecast_DE.json")["forecast"]
    assert series.value_at(T0) == raw[0]["carbonIntensity"]
    assert "beyond it" in notes[0] and "wider uncertainty" in notes[0]


def test_embedded_and_csv_providers_and_errors(tmp_path):
    s, notes = get_series("embedded", "eu-west-3", T0, T0 + timedelta(hours=4), STEP, config=CFG)
    assert len(s) == 16 and "FR" in notes[0]
    p = tmp_path / "grid.csv"
    p.write_text("timestamp,g\n" + "\n".join(f"2026-11-25T{h:02d}:00Z,{100 + h}" for h in range(24)))
    s, _ = get_series(
        "csv",
        "anywhere",
        datetime(2026, 11, 25, 2, tzinfo=UTC),
        datetime(2026, 11, 25, 4, tzinfo=UTC),
        STEP,
        config=cfg(carbon_csv_path=str(p)),
    )
    assert list(s.values) == [102.0] * 4 + [103.0] * 4
    with pytest.raises(ValueError, match="unknown carbon provider"):
        get_series("nope", "eu-west-3", T0, T0 + STEP, STEP, config=CFG)


def test_settings_from_env_drive_the_providers(monkeypatch):
    monkeypatch.setenv("ORCH_WATTTIME_REGIONS", '{"US-West-1": "CAISO_NORTH"}')
    monkeypatch.setenv("ORCH_CARBON_AWARE_SDK_LOCATIONS", '{"us-east-1": "eastus"}')
    monkeypatch.setenv("ORCH_CARBON_CACHE_TTL_SEC", "120")
    s = Settings(
        _env_file=None, watttime_username="u", watttime_password="p", carbon_aware_sdk_url="http://x"
    )
    assert s.carbon_cache_ttl_sec == 120
    assert cc.WattTime(s).target("us-west-1") == "CAISO_NORTH"
    assert cc.CarbonAwareSdk(s).target("us-east-1") == "eastus"
    assert cc.CarbonAwareSdk(s).target("westeurope") == "westeurope"
    assert cc.ElectricityMaps(cfg(electricitymaps_api_key="k")).target("eu-west-2") == "GB"
