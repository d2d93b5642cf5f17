"""Out-of-sample check on data the product never saw (not shipped, not used for tuning).

    .venv/bin/python bench/bench_holdout.py HOLDOUT_DIR

Runs the scheduling-value comparison of ``bench_forecast.py`` (daily 1-h job at every hour, +-8 h window,
seasonal vs naive forecaster, share of the oracle's saving) on every CSV under ``PATH/carbon``:
Electricity Maps exports (LCA column) and ``Time,Carbon Intensity`` files (any resolution).
Prints a note and exits 0 when PATH does not exist.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_forecast import scheduling_value  # noqa: E402
from carbon.csvfile import load_csv_series  # noqa: E402

LCA = "Carbon Intensity gCO₂eq/kWh (LCA)"


def load(path: Path):
    with path.open(encoding="utf-8-sig") as f:
        header = next(csv.reader(f))
    col = LCA if LCA in header else ("Carbon Intensity" if "Carbon Intensity" in header else 1)
    return load_csv_series(path, value_column=col, tz="UTC")  # both export formats are in UTC


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--hours", default=",".join(str(h) for h in range(24)))
    args = ap.parse_args()
    root = args.path / "carbon"
    if not root.is_dir():
        print(f"skipped: {root} not found (hold-out data is optional)")
        return
    hours = [int(h) for h in args.hours.split(",")]
    print("| file | step | submissions | oracle saving % | seasonal share | naive share | seasonal - naive |")
    print("|---|---|---|---|---|---|---|")
    wins = total = 0
    for p in sorted(root.glob("*.csv")):
        s = load(p)
        a, b = scheduling_value(s, "seasonal", hours), scheduling_value(s, "naive", hours)
        if a.share_of_oracle is None or b.share_of_oracle is None:
            continue
        total += 1
        wins += a.share_of_oracle > b.share_of_oracle
        print(
            f"| {p.name} | {s.step.total_seconds() / 60:.0f} min | {a.submissions} | "
            f"{a.oracle_savings_pct:.1f} | {a.share_of_oracle * 100:.1f}% | {b.share_of_oracle * 100:.1f}% | "
            f"{(a.share_of_oracle - b.share_of_oracle) * 100:+.1f} pts |"
        )
        sys.stdout.flush()
    print(f"\nseasonal beats naive on {wins} of {total} hold-out series")


if __name__ == "__main__":
    main()
