"""Helpers of the carbon-provider tests: the documented-shape fixtures in tests/fixtures/carbon, an
httpx.MockTransport handler that records requests, and the product's entry point with a given provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from carbon import get_series as _get_series
from core.settings import Settings

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "carbon"
T0 = datetime(2026, 11, 25, 18, tzinfo=UTC)
STEP = timedelta(minutes=15)


def fixture(name: str):
    return json.loads((FIX / name).read_text())


class Recorder:
    """MockTransport handler that serves fixtures and remembers requests."""

    def __init__(self, routes):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for (method, path), fn in self.routes.items():
            if request.method == method and request.url.path == path:
                return fn(request)
        return httpx.Response(404, json={"error": "not found"})


def client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def cfg(**kw) -> Settings:
    """Settings for the provider tests (nothing from the environment)."""
    return Settings(_env_file=None, **{"carbon_provider": "embedded", **kw})


CFG = cfg(
    electricitymaps_api_key="em-key",
    watttime_username="user",
    watttime_password="pass",
    carbon_aware_sdk_url="http://gsf.local",
    watttime_regions={"us-west-1": "CAISO_NORTH"},
    carbon_aware_sdk_locations={"us-east-1": "eastus"},
)


def get_series(provider, region, start, end, step, *, config=CFG, **kw):
    """The product's entry point with an explicit provider (the old call shape of these tests)."""
    kw.setdefault("now", T0)
    return _get_series(region, start, end, step, settings=config, provider=provider, **kw)
