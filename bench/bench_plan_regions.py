"""Benchmark: one joint (region, start) plan over 10 regions against the same plan in one region.

    .venv/bin/python bench/bench_plan_regions.py [--repeat 1000]

A 7-day window on a 5-minute grid (2,016 starts), a 6-hour job, NEUTRAL, default weights and skill gate.
The regions' series are the embedded 2023 hourly series of 9 AWS regions (resampled to 5 minutes; two
share PJM) and one flat CCF-factor region, all on one grid as the product's providers return them. Timed:
``plan_regions`` end to end (slicing, the regions x starts integrals, risk, gate, top-5, rationale).
Prints median/p90 per plan and the ratio 10 regions / 1 region.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_plan import timed  # noqa: E402
from scheduling.carbon import CarbonSeries, embedded_history, zone_for_region  # noqa: E402
from scheduling.scoring import RegionOption, RiskMode, Weights, plan_regions  # noqa: E402

STEP = timedelta(minutes=5)
REGIONS = [
    "eu-central-1",
    "eu-west-3",
    "eu-west-2",
    "eu-south-2",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "sa-east-1",
    "ap-south-1",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1000)
    args = ap.parse_args()

    e = datetime(2023, 5, 2, 3, 20, tzinfo=UTC)
    lo, hi = e - timedelta(days=1), e + timedelta(days=9)
    options = []
    for region in REGIONS:
        zone = zone_for_region(region)
        assert zone is not None
        series = embedded_history(zone).slice(lo, hi).resample(STEP)
        options.append(RegionOption(region, series, 0.2, 0.06))
    flat = options[0].series
    options.append(
        RegionOption("ca-central-1", CarbonSeries(flat.start, STEP, np.full(len(flat), 130.0)), 0.2)
    )
    kw = dict(
        earliest=e,
        latest=e + timedelta(days=7),
        p50_sec=6 * 3600.0,
        p90_sec=7.5 * 3600.0,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        step=STEP,
    )
    one, ten = options[:1], options
    for _ in range(30):  # warm-up
        plan_regions(options=one, **kw)
        plan_regions(options=ten, **kw)
    t1 = timed(lambda: plan_regions(options=one, **kw), args.repeat)
    t10 = timed(lambda: plan_regions(options=ten, **kw), args.repeat)
    plan = plan_regions(options=ten, **kw)
    m1, m10 = statistics.median(t1), statistics.median(t10)

    def q90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * len(xs))]

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"starts per region: {plan.feasible_count}; regions: {len(ten)}")
    print(f"1 region : median {m1 * 1e3:.3f} ms, p90 {q90(t1) * 1e3:.3f} ms")
    print(f"10 regions: median {m10 * 1e3:.3f} ms, p90 {q90(t10) * 1e3:.3f} ms")
    print(f"ratio 10/1 (median): {m10 / m1:.2f}")
    print(f"chosen: {plan.chosen.region} at {plan.chosen.start:%Y-%m-%d %H:%M}Z, {plan.rationale[:160]}...")


if __name__ == "__main__":
    main()
