"""HTTP carbon-intensity providers behind one call: :func:`get_series`.

Providers (``provider`` argument / ``ORCH_CARBON_PROVIDER``):

- ``embedded``: the packaged seasonal forecast (``scheduling.carbon.embedded_series``), no network.
- ``csv``: a user's ``timestamp, g/kWh`` file (``carbon_csv_path``), for their own data.
- ``electricitymaps``: ``GET {url}/v3/carbon-intensity/forecast?zone=Z&horizonHours=H`` with header
  ``auth-token``; ``{"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}``, g/kWh (LCA).
  AWS region -> zone by ``electricitymaps_zones`` (settings), else ``aws-region-zones.csv``, else the
  region string passes through (so a zone key such as ``DE`` works directly).
- ``watttime``: ``GET {url}/login`` with HTTP basic auth -> ``{"token"}`` (kept ~25 min), then
  ``GET {url}/v3/forecast?region=R&signal_type=co2_moer&horizon_hours=H`` with ``Authorization: Bearer``;
  ``{"data": [{"point_time", "value"}], "meta": {"units": "lbs_co2_per_mwh", ...}}``; lbs/MWh x 0.45359237
  = g/kWh. ``co2_moer`` is a *marginal* signal. AWS region -> WattTime region by ``watttime_regions``
  (settings), else the region string passes through (e.g. ``CAISO_NORTH``).
- ``carbon-aware-sdk``: the GSF WebAPI, ``GET {url}/emissions/forecasts/current?location=L`` ->
  ``[{"forecastData": [{"timestamp", "duration" (min), "value" (g/kWh)}], ...}]``. AWS region ->
  location by ``carbon_aware_sdk_locations`` (settings), else pass-through (the SDK's location names,
  e.g. ``eastus``).

Each provider's whole forecast is cached per (provider, zone) for ``carbon_cache_ttl_sec`` (default 900 s)
in normalised form, so thousands of jobs planning against the same region cost one provider call per TTL;
a failure is cached for 60 s so an outage does not make every plan wait on a timeout. The cache is in
memory by default; pass any object with ``get(key) -> bytes | None`` and ``put(key, bytes, ttl_sec)``
(e.g. DB-backed) as ``cache``.

Where the forecast does not cover the requested range (providers forecast 24-72 h; windows may be
longer), the embedded seasonal forecast fills the rest, and a note says so. If the provider fails, the
whole range comes from ``embedded`` and the first note says why: callers put the notes in the rationale.

Configuration is read from the settings object (attribute names below) and, for attributes the settings
class does not declare, from ``ORCH_<NAME>`` environment variables: ``electricitymaps_api_key``,
``electricitymaps_url``, ``watttime_username``, ``watttime_password``, ``watttime_url``,
``carbon_aware_sdk_url``, ``electricitymaps_zones`` / ``watttime_regions`` / ``carbon_aware_sdk_locations``
(dicts, or JSON objects in the environment), ``carbon_cache_ttl_sec``, ``carbon_http_timeout_sec``,
``carbon_horizon_hours``, ``carbon_csv_path``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import numpy as np

from scheduling.carbon import (
    CarbonSeries,
    ceil_time,
    embedded_series,
    floor_time,
    load_csv_series,
    parse_timestamp,
    series_from_points,
    zone_for_region,
)

__all__ = [
    "PROVIDERS",
    "CarbonCache",
    "CarbonProviderConfig",
    "CarbonProviderError",
    "CarbonService",
    "MemoryTTLCache",
    "get_series",
]

log = logging.getLogger(__name__)

PROVIDERS = ("embedded", "csv", "electricitymaps", "watttime", "carbon-aware-sdk")
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 453.59237 g/lb / 1000 kWh/MWh
FAILURE_TTL_SEC = 60
_USER_AGENT = "carbon-orchestrator/0.1 (+scheduling)"


class CarbonProviderError(RuntimeError):
    """A provider could not be used and there is no embedded data to fall back on."""


class CarbonCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_sec: int) -> None: ...


class MemoryTTLCache:
    """Thread-safe in-process TTL cache (bytes values), bounded to ``max_entries`` (oldest evicted)."""

    def __init__(self, max_entries: int = 1024, clock: Any = time.monotonic) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._data[key]
                return None
            return item[1]

    def put(self, key: str, value: bytes, ttl_sec: int) -> None:
        with self._lock:
            if len(self._data) >= self._max and key not in self._data:
                del self._data[next(iter(self._data))]
            self._data[key] = (self._clock() + ttl_sec, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


DEFAULT_CACHE = MemoryTTLCache()


def _mapping(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError("region mappings must be objects {aws_region: provider_region}")
    return {str(k).strip().lower(): str(v).strip() for k, v in value.items()}


@dataclass(frozen=True)
class CarbonProviderConfig:
    """Provider endpoints, credentials and region mappings (see the module docstring)."""

    electricitymaps_api_key: str | None = None
    electricitymaps_url: str = "https://api.electricitymap.org"
    watttime_username: str | None = None
    watttime_password: str | None = None
    watttime_url: str = "https://api.watttime.org"
    carbon_aware_sdk_url: str | None = None
    electricitymaps_zones: Mapping[str, str] = field(default_factory=dict)
    watttime_regions: Mapping[str, str] = field(default_factory=dict)
    carbon_aware_sdk_locations: Mapping[str, str] = field(default_factory=dict)
    carbon_cache_ttl_sec: int = 900
    carbon_http_timeout_sec: float = 10.0
    carbon_horizon_hours: int = 72
    carbon_csv_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Any = None) -> CarbonProviderConfig:
        """Read every field from ``settings`` attributes, else ``ORCH_<FIELD>`` env vars, else defaults."""
        kw: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            value = getattr(settings, name, None) if settings is not None else None
            if value is None:
                value = os.environ.get(f"ORCH_{name.upper()}")
            if value is None or value == "":
                continue
            if name in ("electricitymaps_zones", "watttime_regions", "carbon_aware_sdk_locations"):
                value = _mapping(value)
            elif f.type in ("int", int):
                value = int(value)
            elif f.type in ("float", float):
                value = float(value)
            else:
                value = str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
            kw[name] = value
        return cls(**kw)

    def provider_region(self, provider: str, region: str) -> str:
        """The provider's name for an AWS region (documented mapping rules; pass-through otherwise)."""
        key = region.strip().lower()
        if provider == "electricitymaps":
            return self.electricitymaps_zones.get(key) or zone_for_region(key) or region.strip()
        if provider == "watttime":
            return self.watttime_regions.get(key) or region.strip()
        if provider == "carbon-aware-sdk":
            return self.carbon_aware_sdk_locations.get(key) or region.strip()
        return key


# --------------------------------------------------------------------------- provider calls

_WATTTIME_TOKENS: dict[tuple[str, str], tuple[float, str]] = {}
_TOKENS_LOCK = threading.Lock()
WATTTIME_TOKEN_TTL_SEC = 25 * 60  # tokens live ~30 min


def _points(rows: list[tuple[datetime, float]]) -> tuple[list[datetime], list[float]]:
    if len(rows) < 2:
        raise ValueError(f"provider returned {len(rows)} forecast points; need at least 2")
    return [t for t, _ in rows], [v for _, v in rows]


def fetch_electricitymaps(http: httpx.Client, cfg: CarbonProviderConfig, zone: str) -> CarbonSeries:
    """Electricity Maps v3 forecast for ``zone`` (g/kWh)."""
    if not cfg.electricitymaps_api_key:
        raise ValueError("electricitymaps_api_key is not configured")
    r = http.get(
        f"{cfg.electricitymaps_url.rstrip('/')}/v3/carbon-intensity/forecast",
        params={"zone": zone, "horizonHours": cfg.carbon_horizon_hours},
        headers={"auth-token": cfg.electricitymaps_api_key},
    )
    r.raise_for_status()
    body = r.json()
    rows = [
        (parse_timestamp(p["datetime"]), float(p["carbonIntensity"]))
        for p in body["forecast"]
        if p.get("carbonIntensity") is not None
    ]
    return series_from_points(*_points(rows))


def _watttime_token(http: httpx.Client, cfg: CarbonProviderConfig, fresh: bool = False) -> str:
    if not (cfg.watttime_username and cfg.watttime_password):
        raise ValueError("watttime_username / watttime_password are not configured")
    key = (cfg.watttime_url, cfg.watttime_username)
    now = time.monotonic()
    with _TOKENS_LOCK:
        cached = _WATTTIME_TOKENS.get(key)
    if cached and cached[0] > now and not fresh:
        return cached[1]
    r = http.get(f"{cfg.watttime_url.rstrip('/')}/login", auth=(cfg.watttime_username, cfg.watttime_password))
    r.raise_for_status()
    token = str(r.json()["token"])
    with _TOKENS_LOCK:
        _WATTTIME_TOKENS[key] = (now + WATTTIME_TOKEN_TTL_SEC, token)
    return token


def fetch_watttime(http: httpx.Client, cfg: CarbonProviderConfig, region: str) -> CarbonSeries:
    """WattTime v3 ``co2_moer`` forecast for a WattTime region, converted to g/kWh."""
    url = f"{cfg.watttime_url.rstrip('/')}/v3/forecast"
    params: dict[str, str | int] = {
        "region": region,
        "signal_type": "co2_moer",
        "horizon_hours": cfg.carbon_horizon_hours,
    }
    token = _watttime_token(http, cfg)
    r = http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    if r.status_code == 401:  # expired token: log in again once
        token = _watttime_token(http, cfg, fresh=True)
        r = http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    body = r.json()
    units = str(body.get("meta", {}).get("units", "lbs_co2_per_mwh")).lower()
    if units in ("lbs_co2_per_mwh", "lbs/mwh"):
        factor = LBS_PER_MWH_TO_G_PER_KWH
    elif units in ("g_co2_per_kwh", "g/kwh", "kg_co2_per_mwh"):
        factor = 1.0
    else:
        raise ValueError(f"unexpected WattTime units {units!r}")
    rows = [
        (parse_timestamp(p["point_time"]), float(p["value"]) * factor)
        for p in body["data"]
        if p.get("value") is not None
    ]
    return series_from_points(*_points(rows))


def fetch_carbon_aware_sdk(http: httpx.Client, cfg: CarbonProviderConfig, location: str) -> CarbonSeries:
    """GSF Carbon Aware SDK WebAPI current forecast for ``location`` (g/kWh)."""
    if not cfg.carbon_aware_sdk_url:
        raise ValueError("carbon_aware_sdk_url is not configured")
    r = http.get(
        f"{cfg.carbon_aware_sdk_url.rstrip('/')}/emissions/forecasts/current", params={"location": location}
    )
    r.raise_for_status()
    body = r.json()
    if isinstance(body, dict):
        body = [body]
    if not body:
        raise ValueError(f"carbon-aware-sdk returned no forecast for {location!r}")
    data = body[0]["forecastData"]
    times, values = [], []
    for p in data:
        t = parse_timestamp(p["timestamp"])
        times.append(t)
        values.append(float(p["value"]))
    durations = {float(p.get("duration", 0) or 0) for p in data}
    step = timedelta(minutes=durations.pop()) if len(durations) == 1 and 0 not in durations else None
    return series_from_points(*_points(list(zip(times, values, strict=True))), step=step)


_FETCHERS = {
    "electricitymaps": fetch_electricitymaps,
    "watttime": fetch_watttime,
    "carbon-aware-sdk": fetch_carbon_aware_sdk,
}


def _encode(s: CarbonSeries) -> bytes:
    return json.dumps(
        {"start": s.start.isoformat(), "step_sec": s.step.total_seconds(), "values": s.values.tolist()}
    ).encode()


def _decode(raw: bytes) -> CarbonSeries:
    d = json.loads(raw)
    return CarbonSeries(
        datetime.fromisoformat(d["start"]), timedelta(seconds=d["step_sec"]), np.asarray(d["values"], float)
    )


# --------------------------------------------------------------------------- the service


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


class CarbonService:
    """Carbon series for (provider, region, range), cached, with fallback to the embedded forecast."""

    def __init__(
        self,
        config: CarbonProviderConfig | None = None,
        cache: CarbonCache | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.config = config or CarbonProviderConfig.from_settings()
        self.cache: CarbonCache = cache if cache is not None else DEFAULT_CACHE
        self.http = http

    def _forecast(self, provider: str, target: str) -> CarbonSeries:
        key = f"carbon:v1:{provider}:{target}"
        raw = self.cache.get(key)
        if raw is not None:
            if raw.startswith(b"ERR:"):
                raise CarbonProviderError(raw[4:].decode(errors="replace") + " (cached failure)")
            return _decode(raw)
        fetch = _FETCHERS[provider]
        try:
            if self.http is not None:
                series = fetch(self.http, self.config, target)
            else:
                with httpx.Client(
                    timeout=self.config.carbon_http_timeout_sec, headers={"User-Agent": _USER_AGENT}
                ) as http:
                    series = fetch(http, self.config, target)
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as e:
            msg = _describe(e)
            self.cache.put(key, b"ERR:" + msg.encode(), FAILURE_TTL_SEC)
            raise CarbonProviderError(msg) from e
        self.cache.put(key, _encode(series), self.config.carbon_cache_ttl_sec)
        return series

    def get_series(
        self,
        provider: str,
        region: str,
        start: datetime,
        end: datetime,
        step: timedelta = timedelta(minutes=15),
    ) -> tuple[CarbonSeries, list[str]]:
        """Intensity (g/kWh) on a UTC grid of ``step`` (aligned to multiples of ``step``) covering
        ``[start, end)``, and notes for the rationale. ValueError for an unknown provider or region."""
        provider = provider.strip().lower()
        if provider not in PROVIDERS:
            raise ValueError(f"unknown carbon provider {provider!r}; use one of {', '.join(PROVIDERS)}")
        if end <= start:
            raise ValueError("end must be after start")
        g0, g1 = floor_time(start, step), ceil_time(end, step)
        if provider == "embedded":
            series, note = embedded_series(region, g0, g1, step)
            return series, [note]
        if provider == "csv":
            path = self.config.carbon_csv_path
            if not path:
                raise ValueError("carbon_csv_path is not configured for the csv provider")
            data = load_csv_series(path)
            if not data.covers(g0, g1):
                raise ValueError(
                    f"carbon CSV covers [{_iso(data.start)}, {_iso(data.end)}), not [{_iso(g0)}, {_iso(g1)})"
                )
            return data.regrid(g0, g1, step), [f"csv: intensity from {path}"]

        target = self.config.provider_region(provider, region)
        try:
            fc = self._forecast(provider, target)
        except CarbonProviderError as e:
            try:
                series, note = embedded_series(region, g0, g1, step)
            except ValueError:
                raise CarbonProviderError(
                    f"{provider} failed for {target!r} ({e}) and {region!r} has no embedded data"
                ) from e
            log.warning("carbon provider %s failed for %s: %s; using embedded", provider, target, e)
            return series, [f"{provider} unavailable ({e}): using the embedded seasonal forecast", note]
        return self._splice(provider, target, region, fc, g0, g1, step)

    def _splice(
        self,
        provider: str,
        target: str,
        region: str,
        fc: CarbonSeries,
        g0: datetime,
        g1: datetime,
        step: timedelta,
    ) -> tuple[CarbonSeries, list[str]]:
        n = (g1 - g0) // step
        # output intervals wholly inside the provider's forecast
        a = max(0, -((g0 - fc.start) // step)) if fc.start > g0 else 0
        b = min(n, (fc.end - g0) // step)
        label = f"{provider} forecast for {target}"
        if a == 0 and b == n:
            return fc.regrid(g0, g1, step), [f"{label} (covers the window)"]
        values = np.empty(n)
        filler_note: str
        try:
            emb, _ = embedded_series(region, g0, g1, step)
            values[:] = emb.values[:n]
            filler_note = "the embedded seasonal forecast"
        except ValueError:
            values[:] = np.nan
            filler_note = "the nearest forecast value"
        if b > a:
            part = fc.regrid(g0 + a * step, g0 + b * step, step)
            values[a:b] = part.values
        if np.isnan(values).any():
            known = ~np.isnan(values)
            if not known.any():
                raise CarbonProviderError(
                    f"{label} covers [{_iso(fc.start)}, {_iso(fc.end)}), nothing of "
                    f"[{_iso(g0)}, {_iso(g1)}), and {region!r} has no embedded data"
                )
            idx = np.arange(n)
            values = np.interp(idx, idx[known], values[known])  # holds the edge values flat
        covered = max(0, b - a) * step
        note = (
            f"{label} covers {_iso(fc.start)}..{_iso(fc.end)} ({covered / (g1 - g0):.0%} of the window); "
            f"{filler_note} fills the rest"
        )
        return CarbonSeries(g0, step, values), [note]


def _describe(e: BaseException) -> str:
    if isinstance(e, httpx.HTTPStatusError):
        return f"HTTP {e.response.status_code} from {e.request.url.host}"
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.HTTPError):
        return f"{type(e).__name__}: {e}"
    if isinstance(e, KeyError | TypeError | IndexError):
        return f"unexpected response shape ({type(e).__name__}: {e})"
    return str(e)


def get_series(
    provider: str,
    region: str,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=15),
    *,
    cache: CarbonCache | None = None,
    http: httpx.Client | None = None,
    settings: Any = None,
    config: CarbonProviderConfig | None = None,
    session: Any = None,  # accepted for callers holding a DB session; persistence goes through ``cache``
) -> tuple[CarbonSeries, list[str]]:
    """Carbon intensity (g/kWh, UTC grid of ``step``) for an AWS region over ``[start, end)``, plus notes.

    ``provider``: one of :data:`PROVIDERS`. ``cache``: TTL cache (default in-memory); ``http``: an
    ``httpx.Client`` to use (tests pass one with ``httpx.MockTransport``); ``settings``/``config``: where
    credentials and mappings come from. On a provider failure the embedded forecast is returned and the
    first note says so; :class:`CarbonProviderError` only when there is nothing to fall back on.
    """
    del session
    cfg = config or CarbonProviderConfig.from_settings(settings)
    return CarbonService(cfg, cache, http).get_series(provider, region, start, end, step)
