"""Measured carbon intensity of a past interval (actuals, never a forecast or a climatology).

Used after a run to record what its real interval (and its baseline interval) emitted by measurement. The
region's sources are asked in the order of the forecast chain (``ORCH_CARBON_PROVIDER``); the first that
has measured values covering the whole interval answers:

- ``csv``: the file's values (a CSV is a record of actuals) when the file covers the interval;
- live providers with a measured history: ``electricitymaps`` (``/v3/carbon-intensity/past-range``,
  points it marks ``isEstimated`` do not count), ``watttime`` (``/v3/historical``, a marginal signal),
  ``uk-carbon-intensity`` (national actuals), ``energy-charts`` (``co2eq``, not ``co2eq_forecast``);
  ``carbon-aware-sdk`` has none here;
- ``embedded``: the shipped Electricity Maps data are measurements of 2023 only, so they answer for an
  interval inside 2023; for any other date the embedded source is a climatology and answers nothing.

Gaps of up to 3 h between a provider's points are interpolated (as for forecasts); a longer gap leaves the
interval uncovered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from carbon.base import REGISTRY, CarbonProviderError, NotCovered, describe_error
from carbon.service import _USER_AGENT, CarbonService, _load_csv_cached
from core.settings import Settings
from scheduling.carbon import CarbonSeries, embedded_history, embedded_zones, zone_for_region

__all__ = ["Measured", "measured_series"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """``series``: measured g/kWh covering at least ``[start, end]`` (integrate it there; None when no
    source has it); ``source``: who measured it; ``reasons``: why each source asked before (or instead)
    could not answer."""

    series: CarbonSeries | None
    source: str | None = None
    reasons: list[str] = field(default_factory=list)
    name: str | None = None  # the source's ORCH_CARBON_PROVIDER name

    def why_not(self) -> str:
        return "; ".join(self.reasons) or "no source of measured intensity"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measured_series(
    region: str,
    start: datetime,
    end: datetime,
    *,
    settings: Settings,
    provider: str | None = None,
    http: httpx.Client | None = None,
) -> Measured:
    """Measured intensity over ``[start, end)`` (UTC) for an AWS region, from the first source of the
    region's chain that has it (see the module docstring), else ``Measured(None, reasons=...)``."""
    if end <= start:
        raise ValueError("end must be after start")
    service = CarbonService(settings, http=http)
    reasons: list[str] = []
    for name in service.chain(region, provider):
        try:
            if name == "embedded":
                series, source = _embedded(region, start, end)
            elif name == "csv":
                series, source = _csv(settings, start, end)
            else:
                series, source = _live(settings, name, region, start, end, http)
            return Measured(series, source, reasons, name)
        except (CarbonProviderError, ValueError, KeyError, TypeError, IndexError, httpx.HTTPError) as e:
            reasons.append(f"{name}: {describe_error(e)}")
    return Measured(None, None, reasons)


def _embedded(region: str, start: datetime, end: datetime) -> tuple[CarbonSeries, str]:
    zone = zone_for_region(region.strip().lower())
    if zone is None or zone not in embedded_zones():
        raise NotCovered(f"no hourly data for {region}")
    data = embedded_history(zone)
    if not data.covers(start, end):
        raise NotCovered(
            f"the shipped data are measurements of {data.start.year} only; for "
            f"{start.astimezone(UTC):%Y-%m-%d} it is a climatology, not a measurement"
        )
    return data, f"embedded: Electricity Maps {data.start.year} hourly data, zone {zone} (measured)"


def _csv(settings: Settings, start: datetime, end: datetime) -> tuple[CarbonSeries, str]:
    path = settings.carbon_csv_path
    if not path:
        raise NotCovered("carbon_csv_path is not configured")
    try:
        data = _load_csv_cached(str(path), settings.carbon_csv_tz, int(settings.carbon_csv_max_gap_min))
    except OSError as e:
        raise NotCovered(f"cannot read {Path(path).name}: {e.strerror or type(e).__name__}") from None
    if not data.covers(start, end):
        raise NotCovered(f"the file covers {_iso(data.start)}..{_iso(data.end)}, not this interval")
    return data, f"csv {Path(path).name} (actuals)"


def _live(
    settings: Settings, name: str, region: str, start: datetime, end: datetime, http: httpx.Client | None
) -> tuple[CarbonSeries, str]:
    prov = REGISTRY[name](settings)
    target = prov.target(region)
    if http is not None:
        series = prov.history(http, target, start, end)
    else:
        with httpx.Client(
            timeout=float(settings.carbon_http_timeout_sec), headers={"User-Agent": _USER_AGENT}
        ) as client:
            series = prov.history(client, target, start, end)
    if not series.covers(start, end):
        raise NotCovered(
            f"measured values cover {_iso(series.start)}..{_iso(series.end)}, not {_iso(start)}..{_iso(end)}"
        )
    return series, f"{name} for {target} (measured history)"
