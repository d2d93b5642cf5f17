"""Strict CSV loading (issue 11 item 7) and the csv provider's use of recent actuals (item 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carbon import CarbonService, MemoryTTLCache
from carbon.csvfile import load_csv
from carbon.embedded import embedded_series
from core.settings import Settings
from scheduling.backtest import BacktestConfig, daily_submissions, run_backtest
from scheduling.carbon import embedded_history

H = timedelta(hours=1)


def csv(*rows: str) -> str:
    return "timestamp,g\n" + "\n".join(rows) + "\n"


def test_naive_timestamps_are_refused_without_a_zone_naming_the_line():
    text = csv("2023-01-01T00:00Z,1", "2023-01-01 01:00,2")
    with pytest.raises(ValueError, match=r"line 3: timestamp '2023-01-01 01:00' has no UTC offset.*--tz"):
        load_csv(text)
    with pytest.raises(ValueError, match="line 2"):
        load_csv(csv("01/01/2023 00:00,1", "01/01/2023 01:00,2"))  # day-first local format: same rule
    s = load_csv(text, tz="UTC").series
    assert s.start == datetime(2023, 1, 1, tzinfo=UTC) and list(s.values) == [1, 2]
    # offsets and epoch seconds carry their own zone
    s = load_csv(
        csv("2023-01-01T01:00+01:00,1", f"{datetime(2023, 1, 1, 1, tzinfo=UTC).timestamp():.0f},2")
    ).series
    assert s.start == datetime(2023, 1, 1, tzinfo=UTC) and list(s.values) == [1, 2]
    with pytest.raises(ValueError, match="unknown time zone"):
        load_csv(text, tz="Mars/Olympus")


def test_dst_fall_back_repeated_local_hour_is_read_in_file_order():
    rows = ["00:00", "00:30", "01:00", "01:30", "01:00", "01:30", "02:00", "02:30"]  # 29 Oct 2023 in London
    text = csv(*(f"2023-10-29 {t},{100 + i}" for i, t in enumerate(rows)))
    s = load_csv(text, tz="Europe/London")
    # 00:00 BST = 23:00Z; the second 01:00 is GMT (01:00Z): eight distinct half-hours, nothing averaged
    assert s.series.start == datetime(2023, 10, 28, 23, tzinfo=UTC) and s.series.step == timedelta(minutes=30)
    assert list(s.series.values) == [100 + i for i in range(8)] and s.warnings == []


def test_dst_spring_forward_missing_hour_is_no_gap_and_a_nonexistent_time_is_refused():
    ok = csv("2023-03-26 00:00,1", "2023-03-26 00:30,2", "2023-03-26 02:00,3", "2023-03-26 02:30,4")
    s = load_csv(ok, tz="Europe/London")  # 02:00 BST = 01:00Z: continuous half-hours
    assert list(s.series.values) == [1, 2, 3, 4] and s.warnings == []
    bad = csv("2023-03-26 00:30,1", "2023-03-26 01:30,2", "2023-03-26 02:30,3")
    with pytest.raises(
        ValueError, match=r"line 3: local time '2023-03-26 01:30' does not exist in Europe/London"
    ):
        load_csv(bad, tz="Europe/London")


def test_gaps_are_interpolated_up_to_the_bound_and_refused_beyond():
    short = csv(
        "2023-01-01T00:00Z,100", "2023-01-01T01:00Z,200", "2023-01-01T04:00Z,500", "2023-01-01T05:00Z,600"
    )
    s = load_csv(short)  # 2 missing hours <= 3 h
    np.testing.assert_allclose(s.series.values, [100, 200, 300, 400, 500, 600])
    assert any("2 missing 60-minute intervals interpolated" in w for w in s.warnings)
    with pytest.raises(ValueError, match=r"gap of 2 h between line 3 and line 4.*at most 1 h"):
        load_csv(short, max_gap=H)
    long = csv("2023-01-01T00:00Z,1", "2023-01-01T01:00Z,2", "2023-01-04T00:00Z,3", "2023-01-04T01:00Z,4")
    with pytest.raises(ValueError, match=r"gap of 70 h between line 3 and line 4"):
        load_csv(long)
    empty_values = csv(*(f"2023-01-01T{h:02d}:00Z,{'' if 2 <= h <= 6 else h}" for h in range(10)))
    with pytest.raises(ValueError, match="gap of 5 h"):
        load_csv(empty_values)


def test_unsorted_and_duplicate_rows_are_fixed_with_a_warning():
    text = csv("2023-01-01T02:00Z,3", "2023-01-01T00:00Z,1", "2023-01-01T01:00Z,2", "2023-01-01T01:00Z,4")
    s = load_csv(text)
    assert list(s.series.values) == [1, 3, 3]
    assert s.warnings == [
        "rows are not in time order (first at line 3): sorted",
        "1 rows repeat an earlier time (first at line 5): averaged",
    ]


def test_mixed_resolutions_are_resampled_time_weighted():
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    rows = [f"{t0 + i * timedelta(minutes=30):%Y-%m-%dT%H:%MZ},{10 * i}" for i in range(8)]  # 4 h at 30 min
    t1 = t0 + timedelta(hours=4)
    rows += [f"{t1 + i * timedelta(minutes=15):%Y-%m-%dT%H:%MZ},{100 + i}" for i in range(8)]  # 2 h at 15 min
    s = load_csv(csv(*rows))
    assert s.series.step == timedelta(minutes=30) and len(s.series) == 12
    np.testing.assert_allclose(s.series.values[:8], [10 * i for i in range(8)])
    np.testing.assert_allclose(s.series.values[8:], [100.5, 102.5, 104.5, 106.5])
    assert "mixed resolutions (15 min, 30 min)" in s.warnings[0]
    # ties between 15- and 30-minute spans go to the coarser grid: 30-minute data is never split
    rows2 = rows[:4] + [
        f"{t0 + timedelta(hours=2) + i * timedelta(minutes=15):%Y-%m-%dT%H:%MZ},{i}" for i in range(8)
    ]
    assert load_csv(csv(*rows2)).series.step == timedelta(minutes=30)


def gb_mixed_files(tmp_path):
    """GB-style: 30-minute rows for 20 days, then 15-minute rows; and the same file resampled by hand."""
    h = embedded_history("GB")
    t0 = datetime(2023, 3, 1, tzinfo=UTC)
    hourly_t = np.array([(t - t0).total_seconds() for t in h.times()])
    split = t0 + timedelta(days=20)

    def value(t):
        return float(np.interp((t - t0).total_seconds(), hourly_t, h.values))

    mixed, by_hand = [], []
    t = t0
    while t < split:
        mixed.append(f"{t:%Y-%m-%dT%H:%MZ},{value(t):.2f}")
        by_hand.append(mixed[-1])
        t += timedelta(minutes=30)
    while t < t0 + timedelta(days=40):
        a, b = round(value(t), 2), round(value(t + timedelta(minutes=15)), 2)
        mixed += [f"{t:%Y-%m-%dT%H:%MZ},{a:.2f}", f"{t + timedelta(minutes=15):%Y-%m-%dT%H:%MZ},{b:.2f}"]
        by_hand.append(f"{t:%Y-%m-%dT%H:%MZ},{(a + b) / 2:.4f}")
        t += timedelta(minutes=30)
    p1, p2 = tmp_path / "mixed.csv", tmp_path / "by_hand.csv"
    p1.write_text(csv(*mixed))
    p2.write_text(csv(*by_hand))
    return p1, p2


def test_gb_style_mixed_file_saves_the_same_as_the_file_resampled_by_hand(tmp_path):
    mixed, by_hand = gb_mixed_files(tmp_path)
    cfg = BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=8)
    results = []
    for p in (mixed, by_hand):
        s = load_csv(p).series
        results.append(run_backtest(s, daily_submissions(s, "01:00"), cfg))
    a, b = results
    assert a.submissions == b.submissions >= 38
    assert a.savings_pct == pytest.approx(b.savings_pct, abs=1e-6) and a.savings_pct > 1
    assert a.baseline_g == pytest.approx(b.baseline_g, rel=1e-9)


# --------------------------------------------------------------------------- the csv provider


def provider(tmp_path, text: str, **kw) -> CarbonService:
    p = tmp_path / "grid.csv"
    p.write_text(text)
    s = Settings(_env_file=None, carbon_provider="csv", carbon_csv_path=str(p), **kw)
    return CarbonService(s, cache=MemoryTTLCache())


def test_csv_provider_refuses_naive_times_unless_the_setting_gives_a_zone(tmp_path):
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    text = csv(*(f"{t0 + i * H:%Y-%m-%d %H:%M},{100 + i}" for i in range(48)))
    _, notes = provider(tmp_path, text).get_series("eu-west-2", t0, t0 + 6 * H)
    assert notes[0].startswith("csv unavailable (line 2: timestamp") and "using the embedded data" in notes[0]
    s, notes = provider(tmp_path, text, carbon_csv_tz="Europe/London").get_series("eu-west-2", t0, t0 + 6 * H)
    assert notes == ["csv grid.csv: intensity from the file"] and s.value_at(t0 + 2 * H) == 102


def test_csv_ending_before_the_window_gives_recent_profile_and_anomaly(tmp_path):
    """Recent actuals at twice the climatology's level: the forecast follows them, not 2023's level."""
    t_end = datetime(2026, 1, 20, tzinfo=UTC)
    start = t_end - timedelta(days=10)
    clim, _ = embedded_series("eu-west-2", start, t_end + timedelta(days=1), H)
    rows = [
        f"{t:%Y-%m-%dT%H:%MZ},{2 * v:.1f}"
        for t, v in zip(clim.times(), clim.values, strict=True)
        if t < t_end
    ]
    svc = provider(tmp_path, csv(*rows))
    s, notes = svc.get_series("eu-west-2", t_end, t_end + timedelta(hours=24))
    assert "daily profile + decaying anomaly of the last 240 h" in notes[0]
    future = clim.values[clim.index_of(t_end) :]
    assert s.values.mean() > 1.6 * future.mean()
    assert s.sigma is not None and np.all(s.sigma > 0)


def test_csv_provider_missing_file_falls_back(tmp_path):
    s = Settings(_env_file=None, carbon_provider="csv", carbon_csv_path=str(tmp_path / "gone.csv"))
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    _, notes = CarbonService(s, cache=MemoryTTLCache()).get_series("eu-west-2", t0, t0 + H)
    assert notes[0].startswith("csv unavailable (cannot read gone.csv") and str(tmp_path) not in notes[0]


def test_csv_provider_stale_file_is_not_used_as_recent_actuals(tmp_path):
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    text = csv(*(f"{t0 + i * H:%Y-%m-%dT%H:%MZ},{100 + i}" for i in range(48)))
    later = t0 + timedelta(days=30)
    _, notes = provider(tmp_path, text).get_series("eu-west-2", later, later + H)
    assert "nor recent days before it" in notes[0] and "embedded: 2023 climatology" in notes[1]
