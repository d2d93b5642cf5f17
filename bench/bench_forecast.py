"""Benchmark: the seasonal forecaster vs the naive one, on every embedded region (2023 data).

    .venv/bin/python bench/bench_forecast.py [--zones GB,FR] [--hours 0,6,12,18]

1. Forecast error on held-back weeks: every 4th ISO week from week 8 (8, 12, ..., 52: 12 weeks). For each,
   forecast the 168 hours from Monday 00:00Z with only the data before it; MAE (g/kWh) and MAPE (%) over
   the first 24 h (day-ahead) and the whole week. The held-back weeks were not used to choose the
   forecaster's settings (they were picked on the share-of-oracle metric below over the year; its
   held-back-weeks-only column is shown next to the full-year one).
2. Scheduling value: a daily 1-hour job at each hour of the day (24 submissions a day) with a +-8 h
   window, planned on a 15-minute grid (CONSERVATIVE, carbon-only weights) from a forecast made when the
   window opens, replayed with ``scheduling.backtest`` after a 42-day warm-up. Share of the oracle's saving
   = (baseline - chosen) / (baseline - oracle), summed over submissions.
3. Cost of one 7-day forecast (median ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.backtest import BacktestConfig, BacktestResult, daily_submissions, run_backtest  # noqa: E402
from scheduling.carbon import CarbonSeries, embedded_history, embedded_zones  # noqa: E402
from scheduling.forecast import NaiveForecaster, SeasonalForecaster  # noqa: E402
from scheduling.scoring import UNGATED  # noqa: E402

HOUR = timedelta(hours=1)
HELD_BACK_WEEKS = list(range(8, 53, 4))


def held_back_week_starts(year: int = 2023) -> list[datetime]:
    return [datetime.fromisocalendar(year, w, 1).replace(tzinfo=UTC) for w in HELD_BACK_WEEKS]


def forecast_errors(series: CarbonSeries, starts: list[datetime], model) -> dict[str, float]:
    """MAE (g/kWh) and MAPE (%) over day-ahead (24 h) and week (168 h) horizons."""
    e24, e168, p24, p168 = [], [], [], []
    for s in starts:
        if s + 7 * 24 * HOUR > series.end or s - timedelta(days=28) < series.start:
            continue
        hist = series.slice(series.start, s)
        fc = model.forecast(hist, s, s + 7 * 24 * HOUR, HOUR).values
        act = series.regrid(s, s + 7 * 24 * HOUR, HOUR).values
        err = np.abs(fc - act)
        e24.append(err[:24].mean())
        e168.append(err.mean())
        p24.append((err[:24] / np.maximum(act[:24], 1.0)).mean() * 100)
        p168.append((err / np.maximum(act, 1.0)).mean() * 100)
    return {
        "mae24": float(np.mean(e24)),
        "mape24": float(np.mean(p24)),
        "mae168": float(np.mean(e168)),
        "mape168": float(np.mean(p168)),
        "weeks": len(e24),
    }


def share(results, keep=lambda r: True) -> float:
    rs = [r for r in results if keep(r)]
    base = sum(r.baseline_g for r in rs)
    return (base - sum(r.chosen_g for r in rs)) / (base - sum(r.oracle_g for r in rs))


def scheduling_value(
    series: CarbonSeries, forecast: str, hours: list[int], warmup_days: float = 42.0
) -> BacktestResult:
    subs = sorted(s for h in hours for s in daily_submissions(series, f"{h:02d}:00"))
    cfg = BacktestConfig(
        p50_sec=3600,
        p90_sec=3600,
        window_hours=8,
        forecast=forecast,
        warmup_days=warmup_days,
        policy=UNGATED,  # compares forecasts' ranking skill; bench_probe.py measures the skill gate
    )
    return run_backtest(series, subs, cfg)


def in_weeks(weeks: set[int]):
    return lambda r: r.nominal.isocalendar().week in weeks


def forecast_cost_ms(series: CarbonSeries, repeat: int = 200) -> float:
    cut = series.start + timedelta(days=200)
    hist = series.slice(series.start, cut)
    model = SeasonalForecaster()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        model.forecast(hist, cut, cut + timedelta(days=7), timedelta(minutes=15))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", default=",".join(embedded_zones()))
    ap.add_argument("--hours", default=",".join(str(h) for h in range(24)), help="nominal hours (UTC)")
    args = ap.parse_args()
    zones = [z for z in args.zones.split(",") if z]
    hours = [int(h) for h in args.hours.split(",")]
    weeks = set(HELD_BACK_WEEKS)
    starts = held_back_week_starts()

    print("## Forecast error on held-back weeks of 2023 (12 weeks; MAE g/kWh, MAPE %)\n")
    print(
        "| zone | seasonal MAE 24 h | naive MAE 24 h | seasonal MAPE 24 h | naive MAPE 24 h "
        "| seasonal MAE 7 d | naive MAE 7 d | seasonal MAPE 7 d | naive MAPE 7 d |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for z in zones:
        s = embedded_history(z)
        a, b = forecast_errors(s, starts, SeasonalForecaster()), forecast_errors(s, starts, NaiveForecaster())
        print(
            f"| {z} | {a['mae24']:.1f} | {b['mae24']:.1f} | {a['mape24']:.1f} | {b['mape24']:.1f} "
            f"| {a['mae168']:.1f} | {b['mae168']:.1f} | {a['mape168']:.1f} | {b['mape168']:.1f} |"
        )
        sys.stdout.flush()

    print(f"\n## Share of the oracle's saving: daily 1-h job, +-8 h window, nominal hours {args.hours} UTC\n")
    print(
        "| zone | submissions | oracle saving % | seasonal share | naive share | seasonal - naive "
        "| held-back weeks: seasonal | naive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    wins = 0
    for z in zones:
        s = embedded_history(z)
        a, b = scheduling_value(s, "seasonal", hours), scheduling_value(s, "naive", hours)
        ha, hb = share(a.results, in_weeks(weeks)), share(b.results, in_weeks(weeks))
        wins += a.share_of_oracle > b.share_of_oracle
        print(
            f"| {z} | {a.submissions} | {a.oracle_savings_pct:.1f} | {a.share_of_oracle * 100:.1f}% "
            f"| {b.share_of_oracle * 100:.1f}% | {(a.share_of_oracle - b.share_of_oracle) * 100:+.1f} pts "
            f"| {ha * 100:.1f}% | {hb * 100:.1f}% |"
        )
        sys.stdout.flush()
    print(f"\nseasonal beats naive on {wins} of {len(zones)} zones")
    print(
        f"\none 7-day forecast (15-min output, 200 days of history): "
        f"median {forecast_cost_ms(embedded_history(zones[0])):.2f} ms"
    )


if __name__ == "__main__":
    main()
