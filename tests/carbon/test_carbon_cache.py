"""The DB-backed carbon cache: many sessions call a provider once (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from carbon import DbCarbonCache
from core.db import Database
from tests.support.carbon import CFG, STEP, T0, Recorder, client, fixture, get_series


def test_provider_called_once_across_sessions(api_settings):
    calls = []

    def forecast(req):
        calls.append(req)
        return httpx.Response(200, json=fixture("electricitymaps_forecast_DE.json"))

    rec = Recorder({("GET", "/v3/carbon-intensity/forecast"): forecast})
    db = Database(api_settings)
    results = []
    try:
        for _ in range(3):  # three independent sessions, like three jobs planned by different workers
            with db.session() as s:
                series, _ = get_series(
                    "electricitymaps",
                    "eu-central-1",
                    T0,
                    T0 + timedelta(hours=24),
                    STEP,
                    cache=DbCarbonCache(s),
                    http=client(rec),
                    config=CFG,
                )
                results.append(series.values.tolist())
    finally:
        db.dispose()
    assert len(calls) == 1
    assert results[0] == results[1] == results[2]


def test_expired_entries_are_misses(api_settings):
    db = Database(api_settings)
    try:
        with db.session() as s:
            DbCarbonCache(s).put("k-expired", b"x", ttl_sec=-1)
            DbCarbonCache(s).put("k-live", b"y", ttl_sec=60)
        with db.session() as s:
            assert DbCarbonCache(s).get("k-expired") is None
            assert DbCarbonCache(s).get("k-live") == b"y"
    finally:
        db.dispose()
