"""Keyless public forecasts: the GB Carbon Intensity API (National Grid ESO) and Fraunhofer ISE
Energy-Charts. Both are average (grid-mix) signals in gCO2/kWh and give recent actuals as well.

- ``uk-carbon-intensity`` (GB, ``ORCH_UK_CARBON_INTENSITY_REGIONS``, default eu-west-2 -> national):
  ``GET {url}/intensity/{from}/fw48h`` -> ``{"data": [{"from", "to", "intensity": {"forecast", "actual",
  "index"}}]}`` (30-minute points, ``actual`` may be null, points may be missing); national actuals of the
  last ``ORCH_CARBON_ACTUALS_DAYS`` days from ``GET {url}/intensity/{from}/{to}`` (at most 14 days).
  With a region id (13 = London): ``GET {url}/regional/intensity/{from}/fw48h/regionid/{id}`` ->
  ``{"data": {"regionid", "shortname", "data": [{"from", "to", "intensity": {"forecast", "index"}}]}}``
  (forecast only).
- ``energy-charts`` (``ORCH_ENERGY_CHARTS_COUNTRIES``: eu-central-1 de, eu-west-3 fr, eu-south-1 it,
  eu-south-2 es, eu-north-1 se, eu-central-2 ch, eu-west-1 ie): ``GET {url}/co2eq?country=de&start=&end=``
  -> ``{"unix_seconds": [...], "co2eq": [... null ...], "co2eq_forecast": [null ... 385.0 ...]}`` (same
  lengths; the past in ``co2eq``, the future in ``co2eq_forecast``). An empty or unknown country is "no
  data here" and the next source is used. Data: Energy-Charts (Fraunhofer ISE), see DATA-LICENSES.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx

from carbon.base import LiveData, LiveProvider, NotCovered, register
from carbon.gridding import points_to_blocks
from carbon.keyed import MAX_GAP, _map, forecast_block, history_block
from scheduling.carbon import CarbonSeries, floor_time, parse_timestamp

__all__ = ["EnergyCharts", "UkCarbonIntensity"]

log = logging.getLogger(__name__)
HALF_HOUR = timedelta(minutes=30)


def _last_block(times: list[datetime], values: list[float], durations=None) -> CarbonSeries | None:
    blocks, _ = points_to_blocks(times, values, max_gap=MAX_GAP, durations=durations)
    return blocks[-1].series if blocks else None


def _num(x) -> float:
    if x is None:
        return float("nan")
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise TypeError(f"intensity {x!r} is not a number")
    return float(x)


def _uk_points(rows: list, field: str) -> tuple[list[datetime], list[float], list[float]]:
    times, vals, durs = [], [], []
    for p in rows:
        t0, t1 = parse_timestamp(p["from"]), parse_timestamp(p["to"])
        v = _num(p["intensity"].get(field))
        times.append(t0)
        vals.append(v)
        durs.append((t1 - t0).total_seconds())
    return times, vals, durs


@register
class UkCarbonIntensity(LiveProvider):
    name = "uk-carbon-intensity"
    attribution = "National Grid ESO Carbon Intensity API (CC BY 4.0)"
    SIGMA0, SIGMA_PER_HOUR = 0.08, 0.004  # NESO's published forecast error is roughly 10 % day-ahead

    def _regions(self) -> dict:
        return dict(self.settings.uk_carbon_intensity_regions or {})

    def target(self, region: str) -> str:
        key = region.strip().lower()
        regions = {str(k).strip().lower(): v for k, v in self._regions().items()}
        if key not in regions:
            raise NotCovered("the GB Carbon Intensity API covers Great Britain only")
        rid = regions[key]
        return "national" if rid is None else f"regionid-{int(rid)}"

    def auto_target(self, region: str) -> str | None:
        try:
            return self.target(region)
        except NotCovered:
            return None

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:
        base = self.settings.uk_carbon_intensity_url.rstrip("/")
        frm = floor_time(now, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        if target == "national":
            r = http.get(f"{base}/intensity/{frm}/fw48h")
            r.raise_for_status()
            rows = r.json()["data"]
        else:
            rid = target.removeprefix("regionid-")
            r = http.get(f"{base}/regional/intensity/{frm}/fw48h/regionid/{rid}")
            r.raise_for_status()
            data = r.json()["data"]
            if isinstance(data, list):  # some deployments wrap the region in a list
                data = data[0]
            rows = data["data"]
        if not isinstance(rows, list):
            raise TypeError(f"'data' is a {type(rows).__name__}, expected a list")
        if not rows:
            raise NotCovered("the GB Carbon Intensity API returned no points")
        ft, fv, fd = _uk_points(rows, "forecast")
        forecast = forecast_block(ft, fv, durations=fd)
        actuals = None
        if target == "national":
            actuals = self._history(http, base, now, rows)
        return LiveData(target, now, forecast, actuals)

    def _history(self, http: httpx.Client, base: str, now: datetime, rows: list) -> CarbonSeries | None:
        days = max(0, min(14, int(self.settings.carbon_actuals_days)))
        t, v, d = _uk_points(rows, "actual")
        if days:
            frm = (floor_time(now, HALF_HOUR) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%MZ")
            to = floor_time(now, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
            try:
                r = http.get(f"{base}/intensity/{frm}/{to}")
                r.raise_for_status()
                ht, hv, hd = _uk_points(r.json()["data"], "actual")
                t, v, d = ht + t, hv + v, hd + d
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:  # the forecast is still usable
                log.info("uk-carbon-intensity: no recent actuals (%s)", type(e).__name__)
        return _last_block(t, v, d)

    def history(self, http: httpx.Client, target: str, start: datetime, end: datetime) -> CarbonSeries:
        """National actuals ``GET {url}/intensity/{from}/{to}`` (``intensity.actual``); the regional API
        publishes forecasts only."""
        if target != "national":
            raise NotCovered("the GB regional API publishes forecasts only, no measured intensity")
        base = self.settings.uk_carbon_intensity_url.rstrip("/")
        frm = floor_time(start, HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        to = (floor_time(end, HALF_HOUR) + HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
        r = http.get(f"{base}/intensity/{frm}/{to}")
        r.raise_for_status()
        t, v, d = _uk_points(r.json()["data"], "actual")
        return history_block(t, v, start, end, durations=d)


@register
class EnergyCharts(LiveProvider):
    name = "energy-charts"
    attribution = "Energy-Charts (Fraunhofer ISE)"
    SIGMA0, SIGMA_PER_HOUR = 0.08, 0.004

    def target(self, region: str) -> str:
        c = _map(self.settings.energy_charts_countries, region)
        if not c:
            raise NotCovered("Energy-Charts has no country mapped to this region")
        return c.lower()

    def auto_target(self, region: str) -> str | None:
        return _map(self.settings.energy_charts_countries, region)

    def fetch(self, http: httpx.Client, target: str, now: datetime) -> LiveData:
        days = max(1, int(self.settings.carbon_actuals_days))
        start = (now - timedelta(days=days)).astimezone(UTC).strftime("%Y-%m-%d")
        end = (now + timedelta(hours=self.settings.carbon_horizon_hours)).astimezone(UTC).strftime("%Y-%m-%d")
        r = http.get(
            f"{self.settings.energy_charts_url.rstrip('/')}/co2eq",
            params={"country": target, "start": start, "end": end},
        )
        r.raise_for_status()
        body = r.json()
        if not isinstance(body, dict):
            raise TypeError(f"response is a {type(body).__name__}, expected an object")
        ts = body["unix_seconds"]
        past = body.get("co2eq")
        future = body.get("co2eq_forecast")
        if past is None and future is None:
            raise KeyError("neither 'co2eq' nor 'co2eq_forecast' in the response")
        past = past if past is not None else [None] * len(ts)
        future = future if future is not None else [None] * len(ts)
        if not (len(ts) == len(past) == len(future)):
            raise ValueError(
                f"unexpected response shape (arrays of {len(ts)}, {len(past)} and {len(future)} values)"
            )
        if not ts:
            raise NotCovered(f"Energy-Charts has no co2eq data for {target!r}")
        times = [datetime.fromtimestamp(float(x), UTC) for x in ts]
        actuals = _last_block(times, [_num(x) for x in past])
        fvals = [_num(x) for x in future]
        forecast = None
        if any(x == x for x in fvals):  # any non-NaN
            forecast = forecast_block(times, fvals)
        if actuals is None and forecast is None:
            raise NotCovered(f"Energy-Charts has only nulls for {target!r}")
        return LiveData(target, now, forecast, actuals)

    def history(self, http: httpx.Client, target: str, start: datetime, end: datetime) -> CarbonSeries:
        """The measured ``co2eq`` values (not ``co2eq_forecast``) of the days around ``[start, end)``."""
        r = http.get(
            f"{self.settings.energy_charts_url.rstrip('/')}/co2eq",
            params={
                "country": target,
                "start": start.astimezone(UTC).strftime("%Y-%m-%d"),
                "end": (end.astimezone(UTC) + timedelta(days=1)).strftime("%Y-%m-%d"),
            },
        )
        r.raise_for_status()
        body = r.json()
        if not isinstance(body, dict):
            raise TypeError(f"response is a {type(body).__name__}, expected an object")
        ts, past = body["unix_seconds"], body.get("co2eq")
        if past is None or len(past) != len(ts):
            raise NotCovered(f"Energy-Charts has no measured co2eq for {target!r} then")
        times = [datetime.fromtimestamp(float(x), UTC) for x in ts]
        return history_block(times, [_num(x) for x in past], start, end)
