"""Providers that need an account: Electricity Maps, WattTime, the GSF Carbon Aware SDK WebAPI.

- ``electricitymaps``: ``GET {url}/v3/carbon-intensity/forecast?zone=Z&horizonHours=H`` with header
  ``auth-token``; ``{"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}``, g/kWh (LCA,
  average). AWS region -> zone by ``ORCH_ELECTRICITYMAPS_ZONES``, else ``aws-region-zones.csv``, else the
  region string passes through (so a zone key such as ``DE`` works directly).
- ``watttime``: ``GET {url}/login`` with HTTP basic auth -> ``{"token"}`` (kept 25 min), then
  ``GET {url}/v3/forecast?region=R&signal_type=co2_moer&horizon_hours=H`` with ``Authorization: Bearer``;
  lbs/MWh x 0.45359237 = g/kWh. ``co2_moer`` is a *marginal* signal. AWS region -> WattTime region by
  ``ORCH_WATTTIME_REGIONS``, else pass-through (e.g. ``CAISO_NORTH``).
- ``carbon-aware-sdk``: ``GET {url}/emissions/forecasts/current?location=L`` ->
  ``[{"forecastData": [{"timestamp", "duration" (min), "value" (g/kWh)}], ...}]``. AWS region -> location
  by ``ORCH_CARBON_AWARE_SDK_LOCATIONS``, else pass-through.

``auto`` uses one of these for a region only when it is configured (credentials) and the region is mapped
explicitly (Electricity Maps: also through the shipped zone table).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from carbon.base import LiveData, LiveProvider, NotCovered, register, secret
from carbon.gridding import points_to_blocks
from scheduling.carbon import CarbonSeries, parse_timestamp, zone_for_region

__all__ = ["CarbonAwareSdk", "ElectricityMaps", "WattTime", "forecast_block", "history_block"]

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 453.59237 g/lb / 1000 kWh/MWh
WATTTIME_TOKEN_TTL_SEC = 25 * 60  # tokens live ~30 min
MAX_GAP = timedelta(hours=3)
_WATTTIME_TOKENS: dict[tuple[str, str], tuple[float, str]] = {}
_TOKENS_LOCK = threading.Lock()


def _map(mapping: dict | None, region: str) -> str | None:
    key = region.strip().lower()
    for k, v in (mapping or {}).items():
        if str(k).strip().lower() == key and v is not None:
            return str(v).strip()
    return None


def forecast_block(
    times: list[datetime],
    values: list[float],
    *,
    signal: str = "average",
    durations: list[float] | None = None,
    step: timedelta | None = None,
    what: str = "forecast",
) -> CarbonSeries:
    """The first contiguous run of provider points (gaps up to 3 h interpolated; a longer gap ends it)."""
    blocks, _ = points_to_blocks(
        times, values, max_gap=MAX_GAP, durations=durations, step=step, signal=signal
    )
    if not blocks:
        raise ValueError(f"provider returned no {what} values")
    return blocks[0].series


def history_block(
    times: list[datetime],
    values: list[float],
    start: datetime,
    end: datetime,
    *,
    signal: str = "average",
    durations: list[float] | None = None,
) -> CarbonSeries:
    """The contiguous run of measured points (gaps up to 3 h interpolated) that overlaps ``[start, end)``
    most; NotCovered when none does."""
    blocks, _ = points_to_blocks(times, values, max_gap=MAX_GAP, durations=durations, signal=signal)

    def overlap(b) -> timedelta:
        return max(timedelta(0), min(b.series.end, end) - max(b.series.start, start))

    best = max(blocks, key=overlap, default=None)
    if best is None or overlap(best) <= timedelta(0):
        raise NotCovered(f"no measured values between {_iso(start)} and {_iso(end)}")
    return best.series


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _watttime_factor(body: dict) -> float:
    units = str(body.get("meta", {}).get("units", "lbs_co2_per_mwh")).lower()
    if units in ("lbs_co2_per_mwh", "lbs/mwh"):
        return LBS_PER_MWH_TO_G_PER_KWH
    if units in ("g_co2_per_kwh", "g/kwh", "kg_co2_per_mwh"):
        return 1.0
    raise ValueError(f"unexpected WattTime units {units!r}")


@register
class ElectricityMaps(LiveProvider):
    name = "electricitymaps"
    keyed = True
    SIGMA0, SIGMA_PER_HOUR = 0.05, 0.003

    def configured(self) -> bool:
        return bool(secret(self.settings.electricitymaps_api_key))

    def target(self, region: str) -> str:
        if not self.configured():
            raise NotCovered("electricitymaps_api_key is not configured")
        return (
            _map(self.settings.electricitymaps_zones, region)
            or zone_for_region(region.strip().lower())
            or region
        ).strip()

    def auto_target(self, region: str) -> str | None:
        if not self.configured():
            return None
        return _map(self.settings.electricitymaps_zones, region) or zone_for_region(region.strip().lower())

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:
        r = http.get(
            f"{self.settings.electricitymaps_url.rstrip('/')}/v3/carbon-intensity/forecast",
            params={"zone": target, "horizonHours": self.settings.carbon_horizon_hours},
            headers={"auth-token": secret(self.settings.electricitymaps_api_key) or ""},
        )
        r.raise_for_status()
        pts = r.json()["forecast"]
        times = [parse_timestamp(p["datetime"]) for p in pts]
        vals = [
            float("nan") if p.get("carbonIntensity") is None else float(p["carbonIntensity"]) for p in pts
        ]
        return LiveData(target, now, forecast_block(times, vals))

    def history(self, http: httpx.Client, target: str, start: datetime, end: datetime) -> CarbonSeries:
        """``GET /v3/carbon-intensity/past-range?zone=&start=&end=`` -> ``{"data": [{"carbonIntensity",
        "datetime", "isEstimated"}]}``. Points Electricity Maps marks ``isEstimated`` are not measurements:
        they count as missing."""
        r = http.get(
            f"{self.settings.electricitymaps_url.rstrip('/')}/v3/carbon-intensity/past-range",
            params={"zone": target, "start": _iso(start), "end": _iso(end)},
            headers={"auth-token": secret(self.settings.electricitymaps_api_key) or ""},
        )
        r.raise_for_status()
        pts = r.json()["data"]
        times = [parse_timestamp(p["datetime"]) for p in pts]
        vals = [
            float("nan")
            if p.get("carbonIntensity") is None or p.get("isEstimated")
            else float(p["carbonIntensity"])
            for p in pts
        ]
        return history_block(times, vals, start, end)


@register
class WattTime(LiveProvider):
    name = "watttime"
    signal = "marginal"
    keyed = True
    SIGMA0, SIGMA_PER_HOUR = 0.10, 0.005  # marginal emissions are noisier than the average mix

    def configured(self) -> bool:
        return bool(self.settings.watttime_username and secret(self.settings.watttime_password))

    def target(self, region: str) -> str:
        if not self.configured():
            raise NotCovered("watttime_username / watttime_password are not configured")
        return _map(self.settings.watttime_regions, region) or region.strip()

    def auto_target(self, region: str) -> str | None:
        return _map(self.settings.watttime_regions, region) if self.configured() else None

    def _token(self, http: httpx.Client, fresh: bool = False) -> str:
        s = self.settings
        user = s.watttime_username or ""
        key = (s.watttime_url, user)
        now = time.monotonic()
        with _TOKENS_LOCK:
            cached = _WATTTIME_TOKENS.get(key)
        if cached and cached[0] > now and not fresh:
            return cached[1]
        r = http.get(
            f"{s.watttime_url.rstrip('/')}/login",
            auth=(user, secret(s.watttime_password) or ""),
        )
        r.raise_for_status()
        token = str(r.json()["token"])
        with _TOKENS_LOCK:
            _WATTTIME_TOKENS[key] = (now + WATTTIME_TOKEN_TTL_SEC, token)
        return token

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:
        url = f"{self.settings.watttime_url.rstrip('/')}/v3/forecast"
        params: dict[str, str | int] = {
            "region": target,
            "signal_type": "co2_moer",
            "horizon_hours": self.settings.carbon_horizon_hours,
        }
        r = http.get(url, params=params, headers={"Authorization": f"Bearer {self._token(http)}"})
        if r.status_code == 401:  # expired token: log in again once
            r = http.get(url, params=params, headers={"Authorization": f"Bearer {self._token(http, True)}"})
        r.raise_for_status()
        body = r.json()
        factor = _watttime_factor(body)
        pts = body["data"]
        times = [parse_timestamp(p["point_time"]) for p in pts]
        vals = [float("nan") if p.get("value") is None else float(p["value"]) * factor for p in pts]
        return LiveData(target, now, forecast_block(times, vals, signal="marginal"))

    def history(self, http: httpx.Client, target: str, start: datetime, end: datetime) -> CarbonSeries:
        """``GET /v3/historical?region=&start=&end=&signal_type=co2_moer`` -> the same shape as the
        forecast: measured marginal emissions rates."""
        url = f"{self.settings.watttime_url.rstrip('/')}/v3/historical"
        params = {"region": target, "signal_type": "co2_moer", "start": _iso(start), "end": _iso(end)}
        r = http.get(url, params=params, headers={"Authorization": f"Bearer {self._token(http)}"})
        if r.status_code == 401:
            r = http.get(url, params=params, headers={"Authorization": f"Bearer {self._token(http, True)}"})
        r.raise_for_status()
        body = r.json()
        factor = _watttime_factor(body)
        pts = body["data"]
        times = [parse_timestamp(p["point_time"]) for p in pts]
        vals = [float("nan") if p.get("value") is None else float(p["value"]) * factor for p in pts]
        return history_block(times, vals, start, end, signal="marginal")


@register
class CarbonAwareSdk(LiveProvider):
    name = "carbon-aware-sdk"
    keyed = True

    def configured(self) -> bool:
        return bool(self.settings.carbon_aware_sdk_url)

    def target(self, region: str) -> str:
        if not self.configured():
            raise NotCovered("carbon_aware_sdk_url is not configured")
        return _map(self.settings.carbon_aware_sdk_locations, region) or region.strip()

    def auto_target(self, region: str) -> str | None:
        return _map(self.settings.carbon_aware_sdk_locations, region) if self.configured() else None

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:
        r = http.get(
            f"{str(self.settings.carbon_aware_sdk_url).rstrip('/')}/emissions/forecasts/current",
            params={"location": target},
        )
        r.raise_for_status()
        body = r.json()
        if isinstance(body, dict):
            body = [body]
        if not body:
            raise NotCovered(f"carbon-aware-sdk returned no forecast for {target!r}")
        data = body[0]["forecastData"]
        times = [parse_timestamp(p["timestamp"]) for p in data]
        vals = [float("nan") if p.get("value") is None else float(p["value"]) for p in data]
        durs = [float(p.get("duration") or 0) * 60.0 for p in data]
        return LiveData(target, now, forecast_block(times, vals, durations=durs))
