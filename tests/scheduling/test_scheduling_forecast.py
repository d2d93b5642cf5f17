"""Seasonal and naive forecasters, and the embedded climatology."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scheduling.carbon import CarbonSeries, embedded_history
from scheduling.forecast import NaiveForecaster, SeasonalForecaster, climatology_forecast, hourly_history

H = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def periodic(days: int, start=T0) -> CarbonSeries:
    hours = np.arange(days * 24)
    return CarbonSeries(start, H, 300 + 100 * np.sin(2 * np.pi * hours / 24))


def test_periodic_series_is_reproduced():
    hist = periodic(50)
    fc = SeasonalForecaster().forecast(hist, hist.end, hist.end + timedelta(days=7))
    want = periodic(57).values[50 * 24 :]
    np.testing.assert_allclose(fc.values, want, rtol=1e-6)
    naive = NaiveForecaster().forecast(hist, hist.end, hist.end + timedelta(days=2))
    np.testing.assert_allclose(naive.values, want[:48], rtol=1e-9)


def test_output_grid_and_coverage():
    hist = embedded_history("GB").slice(datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 3, 1, 5, tzinfo=UTC))
    start = datetime(2023, 3, 1, 7, 10, tzinfo=UTC)
    fc = SeasonalForecaster().forecast(hist, start, start + timedelta(days=7), timedelta(minutes=5))
    assert fc.start == start and fc.step == timedelta(minutes=5) and len(fc) == 7 * 288
    assert np.all(fc.values > 0)
    with pytest.raises(ValueError, match="before the end of the history"):
        SeasonalForecaster().forecast(hist, hist.end - 2 * H, hist.end + H)


def test_forecast_uses_only_the_history_it_is_given():
    year = embedded_history("DE")
    cut = datetime(2023, 6, 1, tzinfo=UTC)
    hist = year.slice(year.start, cut)
    a = SeasonalForecaster().forecast(hist, cut, cut + timedelta(days=3))
    # the same history, followed by anything: forecasts from the same cut-off are identical
    b = SeasonalForecaster().forecast(year.slice(year.start, cut), cut, cut + timedelta(days=3))
    np.testing.assert_array_equal(a.values, b.values)


def test_short_history_degrades_gracefully():
    short = CarbonSeries(T0, H, np.array([100.0, 200.0, 300.0]))
    fc = SeasonalForecaster().forecast(short, short.end, short.end + 5 * H)
    np.testing.assert_allclose(fc.values, 200.0)
    with pytest.raises(ValueError, match="no whole UTC hour"):
        SeasonalForecaster().forecast(CarbonSeries(T0, timedelta(minutes=30), np.ones(1)), T0 + H, T0 + 2 * H)


def test_recent_anomaly_moves_the_next_hours():
    """After a windy (low) spell the forecast starts low and returns towards the profile."""
    rng = np.random.default_rng(0)
    days = 42
    hours = np.arange(days * 24)
    level = np.ones(days * 24)
    for _ in range(30):  # persistent multi-hour anomalies, like weather
        i = rng.integers(0, days * 24 - 30)
        level[i : i + 30] *= rng.uniform(0.5, 1.5)
    base = 300 + 80 * np.sin(2 * np.pi * hours / 24)
    hist_vals = base * level
    hist_vals[-12:] = base[-12:] * 0.5  # it is windy now
    hist = CarbonSeries(T0, H, hist_vals)
    fc = SeasonalForecaster().forecast(hist, hist.end, hist.end + timedelta(hours=48))
    prof = SeasonalForecaster(use_recent=False).forecast(hist, hist.end, hist.end + timedelta(hours=48))
    assert fc.values[0] < 0.8 * prof.values[0]
    assert abs(fc.values[40] / prof.values[40] - 1) < abs(fc.values[0] / prof.values[0] - 1)


def test_hourly_history_of_sub_hourly_data():
    s = CarbonSeries(T0 + timedelta(minutes=30), timedelta(minutes=30), np.arange(1.0, 9.0))
    h0, y = hourly_history(s)
    assert h0 == T0 + H and list(y) == [2.5, 4.5, 6.5]


def test_climatology_weekdays_line_up_across_years():
    year = embedded_history("DE")
    a = climatology_forecast(year, datetime(2023, 5, 1, tzinfo=UTC), datetime(2023, 5, 8, tzinfo=UTC), H)
    b = climatology_forecast(year, datetime(2024, 4, 29, tzinfo=UTC), datetime(2024, 5, 6, tzinfo=UTC), H)
    np.testing.assert_allclose(a.values, b.values)  # 364 days apart: same weekdays
    far = climatology_forecast(year, datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 1, 2, tzinfo=UTC))
    assert len(far) == 96 and np.all(far.values > 0)
    # DE weekends are cleaner than weekdays in the climatology (less demand)
    week = climatology_forecast(year, datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC), H)
    daily = week.values.reshape(7, 24).mean(axis=1)  # Mon..Sun
    assert daily[5:].mean() < daily[:5].mean()
