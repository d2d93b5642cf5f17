"""CarbonSeries, timestamp parsing, the shipped data, CSV basics and the embedded provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carbon.csvfile import load_csv_series
from carbon.embedded import embedded_series
from scheduling.carbon import (
    CarbonSeries,
    embedded_history,
    embedded_zones,
    parse_timestamp,
    regions,
    zone_for_region,
)

T0 = datetime(2026, 3, 10, tzinfo=UTC)
H = timedelta(hours=1)


def test_series_basics_and_integral():
    s = CarbonSeries(T0, H, np.array([100.0, 200.0, 300.0]))
    assert s.end == T0 + 3 * H
    assert s.times() == [T0, T0 + H, T0 + 2 * H]
    assert s.integral(T0, T0 + 3 * H) == pytest.approx(600.0)  # g/kWh x h
    assert s.integral(T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)) == pytest.approx(150.0)
    assert s.value_at(T0 + timedelta(minutes=61)) == 200.0
    with pytest.raises(ValueError):
        s.integral(T0, T0 + 4 * H)
    with pytest.raises(ValueError):
        CarbonSeries(datetime(2026, 1, 1), H, np.ones(2))  # naive start
    assert not s.values.flags.writeable


def test_slice_resample_regrid_preserve_integrals():
    rng = np.random.default_rng(1)
    s = CarbonSeries(T0, H, rng.uniform(50, 500, 48))
    q = s.resample(timedelta(minutes=15))
    assert len(q) == 192 and q.integral(T0, s.end) == pytest.approx(s.integral(T0, s.end))
    c = s.resample(timedelta(hours=3))
    assert len(c) == 16 and c.values[0] == pytest.approx(s.values[:3].mean())
    odd = s.resample(timedelta(minutes=50))
    assert odd.integral(T0, odd.end) == pytest.approx(s.integral(T0, odd.end))
    sl = s.slice(T0 + timedelta(minutes=90), T0 + timedelta(minutes=150))
    assert sl.start == T0 + H and len(sl) == 2
    g = s.regrid(T0 + timedelta(minutes=7), T0 + 5 * H, timedelta(minutes=20))
    assert g.start == T0 + timedelta(minutes=7)
    assert g.integral(g.start, g.end) == pytest.approx(s.integral(g.start, g.end))
    with pytest.raises(ValueError):
        s.slice(T0 - H, T0 + H)


def test_parse_timestamp_formats():
    want = datetime(2023, 1, 2, 3, 0, tzinfo=UTC)
    for text in [
        "2023-01-02T03:00:00Z",
        "2023-01-02 03:00",
        "02/01/2023 03:00",
        "2023-01-02T04:00+01:00",
        str(want.timestamp()),
    ]:
        assert parse_timestamp(text) == want, text
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_load_csv_duplicates_gaps_and_resolution():
    text = (
        "timestamp,g/kWh\n"
        "2023-01-01 00:00,100\n"
        "2023-01-01 00:30,200\n"
        "2023-01-01 00:30,300\n"  # duplicate: averaged -> 250
        "2023-01-01 02:00,400\n"  # 01:00 and 01:30 missing: interpolated
        "2023-01-01 01:00,\n"  # empty value: interpolated
    )
    s = load_csv_series(text, tz="UTC")
    assert s.step == timedelta(minutes=30)
    assert s.start == datetime(2023, 1, 1, tzinfo=UTC)
    np.testing.assert_allclose(s.values, [100, 250, 300, 350, 400])


def test_load_csv_errors_name_the_line(tmp_path):
    with pytest.raises(ValueError, match="line 3"):
        load_csv_series("timestamp,g\n2023-01-01 00:00Z,1\nnot-a-time,2\n")
    with pytest.raises(ValueError, match="line 2.*not a number"):
        load_csv_series("timestamp,g\n2023-01-01 00:00Z,abc\n2023-01-01 01:00Z,2\n")
    with pytest.raises(ValueError, match=">= 0"):
        load_csv_series("timestamp,g\n2023-01-01 00:00Z,-5\n2023-01-01 01:00Z,2\n")
    with pytest.raises(ValueError):
        load_csv_series(b"")
    p = tmp_path / "one.csv"
    p.write_text("timestamp,g\n2023-01-01 00:00Z,1\n")
    with pytest.raises(ValueError, match="at least 2"):
        load_csv_series(p)


def test_embedded_data_is_complete():
    assert set(embedded_zones()) == {"BR", "DE", "ES", "FR", "GB", "IN-WE", "US-CAL-CISO", "US-MIDA-PJM"}
    for z in embedded_zones():
        h = embedded_history(z)
        assert len(h) == 8760 and h.step == H and h.start == datetime(2023, 1, 1, tzinfo=UTC)
        assert np.all(h.values > 0)
    gb = embedded_history("GB")  # DD/MM/YYYY source: check a day after the 12th parsed day-first
    assert gb.value_at(datetime(2023, 1, 1, 0, tzinfo=UTC)) == pytest.approx(103.5)


def test_embedded_series_any_time_and_flat_fallback():
    assert "eu-west-2" in regions() and zone_for_region("eu-west-2") == "GB"
    start, end = datetime(2026, 6, 1, 13, 7, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC)
    s, note = embedded_series("eu-west-2", start, end)
    assert s.covers(start, end) and s.step == timedelta(minutes=15)
    assert "GB" in note and "ODbL" in note
    assert s.values.std() > 1  # a real profile, not flat
    flat, note = embedded_series("eu-north-1", start, end)
    assert np.all(flat.values == 8.0) and "no time-shifting benefit" in note
    with pytest.raises(ValueError, match="unknown AWS region"):
        embedded_series("mars-north-1", start, end)


def test_sigma_and_signal_follow_every_transform():
    s = CarbonSeries(T0, H, np.array([100.0, 200.0, 300.0, 400.0]), sigma=np.array([0, 10, 20, 30.0]))
    assert s.signal == "average" and not s.sigma.flags.writeable
    q = s.resample(timedelta(minutes=30))
    assert list(q.sigma[:4]) == [0, 0, 10, 10]
    c = s.resample(2 * H)
    assert list(c.sigma) == [5, 25] and list(c.values) == [150, 350]
    g = s.regrid(T0 + timedelta(minutes=30), T0 + 2 * H, H)
    np.testing.assert_allclose(g.sigma, [5, 15])
    assert list(s.slice(T0 + H, T0 + 3 * H).sigma) == [10, 20]
    m = CarbonSeries(T0, H, np.ones(2), signal="marginal")
    assert m.shift(H).signal == "marginal" and m.resample(2 * H).signal == "marginal" and m.sigma is None
    with pytest.raises(ValueError, match="sigma has shape"):
        CarbonSeries(T0, H, np.ones(2), sigma=np.ones(3))
    with pytest.raises(ValueError, match="signal"):
        CarbonSeries(T0, H, np.ones(2), signal="median")
