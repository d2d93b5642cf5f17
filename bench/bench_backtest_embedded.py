"""The product's embedded provider's decisions scored on actual series (`orch backtest --forecast embedded`)
for every region with a shipped hourly series (nightly 01:00, 1-hour job, +-8 h, carbon-only weights).

    .venv/bin/python bench/bench_backtest_embedded.py

Two judges per region: the 2023 series itself (in-sample: the climatology was built from it) and the same
series read one week later (``actual(t) = 2023(t + 7 d)``: same season and weekdays, other days' weather, a
proxy for another year). Prints savings, the oracle's, the share of the oracle and how often the plan stayed
at the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.backtest import _product_forecaster  # noqa: E402
from scheduling.backtest import BacktestConfig, daily_submissions, run_backtest  # noqa: E402
from scheduling.carbon import CarbonSeries, embedded_history, embedded_zones, regions, zone_for_region  # noqa: E402


def main() -> None:
    cfg = BacktestConfig(p50_sec=3600, p90_sec=3600, window_hours=8, forecast="embedded")
    by_zone = {zone_for_region(r): r for r in regions() if zone_for_region(r) in embedded_zones()}
    print(f"{'region':<15}{'judge':<12}{'n':>5}{'saved %':>9}{'oracle %':>10}{'share':>8}{'stayed':>8}")
    for zone, region in sorted(by_zone.items()):
        h = embedded_history(zone)
        other = CarbonSeries(h.start, h.step, h.values[7 * 24 :].tolist() + h.values[: 7 * 24].tolist())
        fc = _product_forecaster(region, cfg.step)
        for judge, actual in (("2023", h), ("2023+7d", other)):
            r = run_backtest(actual, daily_submissions(actual, "01:00"), cfg, fc)
            share = "n/a" if r.share_of_oracle is None else f"{r.share_of_oracle:.2f}"
            print(
                f"{region:<15}{judge:<12}{r.submissions:>5}{r.savings_pct:>9.2f}{r.oracle_savings_pct:>10.2f}"
                f"{share:>8}{r.stayed_at_baseline:>8}"
            )


if __name__ == "__main__":
    main()
