"""Benchmark: calibration of runtime predictions (scheduling.prediction.predict_runtime).

    .venv/bin/python bench/bench_calibration.py [--seeds 4000]

Synthetic lognormal run histories (log-sd drawn in [0.05, 1.0]): how often the next run finishes by the
predicted p90 (target 90%) and p50 (target 50%), by history length; and with a drift (every run 2% longer
than the last), where recency weighting matters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.prediction import predict_runtime  # noqa: E402


def coverage(
    n: int, seeds: int, drift: float = 0.0, half_life: float | None = 10.0
) -> tuple[float, float, float]:
    p90_hits = p50_hits = 0
    conf = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        mu, sigma = rng.uniform(3, 9), rng.uniform(0.05, 1.0)
        logs = rng.normal(mu, sigma, n + 1) + drift * np.arange(n + 1)
        runs = np.exp(logs)
        p = predict_runtime(runs[:n], half_life_runs=half_life)
        p90_hits += runs[n] <= p.p90_sec
        p50_hits += runs[n] <= p.p50_sec
        conf.append(p.confidence)
    return p90_hits / seeds, p50_hits / seeds, float(np.mean(conf))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4000)
    args = ap.parse_args()
    print("| history | drift/run | weights | p90 coverage | p50 coverage | mean confidence |")
    print("|---|---|---|---|---|---|")
    for drift in (0.0, 0.02):
        for n in (3, 5, 10, 20, 50):
            for hl in (10.0, None):
                c90, c50, conf = coverage(n, args.seeds, drift, hl)
                w = "half-life 10 runs" if hl else "equal"
                print(f"| {n} runs | {drift:.0%} | {w} | {c90:.1%} | {c50:.1%} | {conf:.2f} |")


if __name__ == "__main__":
    main()
