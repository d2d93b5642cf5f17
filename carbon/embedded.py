"""The ``embedded`` provider: the shipped 2023 hourly series turned into an expected profile, no network.

What it is: for regions whose grid zone has a shipped Electricity Maps 2023 hourly series, a *climatology*:
each hour gets the mean of that hour of day over the 29 days centred on the same date of 2023 (the year read
as a 52-week cycle so weekdays line up), times a weekday factor
(``scheduling.forecast.climatology_forecast``).
What it is not: a forecast of this day's weather or grid: it knows nothing about today. Where recent actuals
of the region are available (a live provider's history, or the csv provider's file ending before the
window), :func:`recent_series` uses them instead: the seasonal forecaster's daily profile of the recent days
plus the decaying recent anomaly. The climatology carries its 2023 history (``CarbonSeries.paired``), so the
planner judges a move by same-day paired savings in that history (``scheduling.paired``), with the shipped
per-zone skill table. Regions without an hourly series get a flat annual CCF factor, and the
note says no time-shifting benefit can be claimed there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from core.aws_validation import known_regions, partition_of
from scheduling import forecast as fc
from scheduling.carbon import (
    CarbonSeries,
    ccf_average_factor,
    ccf_factor,
    ceil_time,
    embedded_history,
    embedded_zones,
    floor_time,
    regions,
    zone_for_region,
)
from scheduling.paired import paired_history

__all__ = ["embedded_series", "has_hourly_data", "is_fallback_region", "recent_series"]

MIN_RECENT = timedelta(hours=24)  # recent actuals needed before they replace the climatology


def _utc(t: datetime, name: str) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {t.isoformat()}")
    return t.astimezone(UTC)


def has_hourly_data(region: str) -> bool:
    zone = zone_for_region(region.strip().lower())
    return zone is not None and zone in embedded_zones()


def embedded_series(
    region: str, start: datetime, end: datetime, step: timedelta = timedelta(minutes=15)
) -> tuple[CarbonSeries, str]:
    """Expected intensity for an AWS region over ``[start, end)`` (grid aligned to UTC multiples of
    ``step``) and the note that says what it is. Unknown region: ValueError."""
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    key = region.strip().lower()
    zone = zone_for_region(key)
    g0, g1 = floor_time(start, step), ceil_time(end, step)
    if zone is not None and zone in embedded_zones():
        series = fc.climatology_forecast(embedded_history(zone), g0, g1, step).with_paired(
            paired_history(zone)
        )
        note = (
            f"embedded: 2023 climatology for {key} (Electricity Maps zone {zone}, 2023 hourly data, ODbL): "
            "the usual daily and weekly shape at this time of year, not a forecast of today's grid"
        )
        return series, note
    factor = ccf_factor(key)
    n = (g1 - g0) // step
    if factor is None:
        if not is_fallback_region(key):
            raise ValueError(f"unknown AWS region {region!r}; known: {', '.join(regions())}")
        factor = ccf_average_factor()
        note = (
            f"{key} has no carbon data (no hourly series, no CCF factor): flat {factor:g} g/kWh, the average "
            "of the CCF region factors (CCF's figure for unknown regions), not a figure of this grid, so no "
            "time-shifting or region-moving benefit can be claimed there"
        )
        return CarbonSeries(g0, step, np.full(n, factor)), note
    note = (
        f"{key} has no hourly carbon series: flat CCF annual factor {factor:g} g/kWh, "
        "so no time-shifting benefit can be claimed there"
    )
    return CarbonSeries(g0, step, np.full(n, factor)), note


def is_fallback_region(region: str) -> bool:
    """An AWS region (one botocore knows for EC2) with no packaged carbon data (no hourly series, no CCF
    factor): the embedded provider gives it the flat CCF average (issue 21; e.g. me-central-1, ca-west-1)."""
    key = region.strip().lower()
    if zone_for_region(key) is not None or ccf_factor(key) is not None:
        return False
    try:
        return key in known_regions(partition_of(key))
    except ValueError:
        return False


def recent_series(
    history: CarbonSeries, start: datetime, end: datetime, step: timedelta, relative_sigma: float
) -> CarbonSeries:
    """Daily profile + decaying recent anomaly from ``history`` (actuals, optionally followed by a live
    forecast) over ``[start, end)``; ``start`` must not be before the history's last whole hour.

    Uses ``scheduling.forecast``'s recent-data forecaster (:class:`SeasonalForecaster`). Its 1-sigma error is
    ``relative_sigma`` x value unless the forecaster reports its own."""
    model = fc.SeasonalForecaster()
    out = model.forecast(history, start, end, step)
    sigma = out.sigma if out.sigma is not None else out.values * relative_sigma
    return CarbonSeries(out.start, out.step, out.values, sigma=sigma, signal=history.signal)
