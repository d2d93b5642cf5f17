"""Benchmark: one plan over a 7-day window on a 5-minute grid (2,016 starts) with a 6-hour job.

    .venv/bin/python bench/bench_plan.py [--repeat 2000]

Timed: ``plan_schedule`` end to end, from a 14-day 5-minute forecast series (slicing it to the window,
prefix sums, risk/slack, normalisation, top-5, Candidate objects and the rationale); then the same plan with
the forecast marked history-based (``with_paired``: the embedded climatology's case), so the paired rule
runs (29 paired days x the starts it judges), and a nightly 30-min job with a +-8 h window on a 15-min
grid. Compared with the straightforward per-candidate reference (``bench/reference_plan.py``) of the
same model, which is also checked to choose the same start. Then the cost for windows of 1..28 days
(linear growth).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reference_plan import reference_choice  # noqa: E402
from scheduling.carbon import embedded_history  # noqa: E402
from scheduling.paired import PairedHistory, PairedSkill, paired_history  # noqa: E402
from scheduling.scoring import RiskMode, Weights, plan_schedule  # noqa: E402

STEP = timedelta(minutes=5)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--reference-repeat", type=int, default=15)
    args = ap.parse_args()

    year = embedded_history("DE")
    e = datetime(2023, 5, 2, 3, 20, tzinfo=UTC)
    forecast = year.slice(e - timedelta(days=2), e + timedelta(days=40)).resample(STEP)  # "the forecast"
    kw = dict(
        earliest=e,
        latest=e + timedelta(days=7),
        p50_sec=6 * 3600.0,
        p90_sec=7.5 * 3600.0,
        series=forecast,
        power_kw=0.2,
        risk_mode=RiskMode.NEUTRAL,
        weights=Weights(),
        step=STEP,
    )
    for _ in range(50):  # warm-up
        plan_schedule(**kw)
    fast = timed(lambda: plan_schedule(**kw), args.repeat)
    plan = plan_schedule(**kw)
    ref_kw = {k: v for k, v in kw.items()}
    ref = timed(lambda: reference_choice(**ref_kw), args.reference_repeat)
    ref_start, _ = reference_choice(**ref_kw)
    med_fast, med_ref = statistics.median(fast), statistics.median(ref)

    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    print(f"plan_schedule: {plan.total_count} starts ({plan.feasible_count} feasible), 6 h job, 5-min grid")
    print(
        f"  median {med_fast * 1e3:.3f} ms  (p10 {sorted(fast)[len(fast) // 10] * 1e3:.3f}, "
        f"p90 {sorted(fast)[len(fast) * 9 // 10] * 1e3:.3f}; n={len(fast)})"
    )
    print(f"reference (per-candidate loop): median {med_ref * 1e3:.1f} ms (n={len(ref)})")
    print(
        f"speed-up: {med_ref / med_fast:.0f}x; same start: {plan.chosen.start == ref_start} "
        f"({plan.chosen.start:%Y-%m-%d %H:%M}Z)"
    )
    kw_p = dict(kw, series=forecast.with_paired(paired_history("DE")))
    for _ in range(50):
        plan_schedule(**kw_p)
    paired = timed(lambda: plan_schedule(**kw_p), args.repeat)
    pp = plan_schedule(**kw_p)
    print(
        f"with the paired rule ({pp.decision_rule['paired_days']} days, judged best first): "
        f"median {statistics.median(paired) * 1e3:.3f} ms"
    )
    de = paired_history("DE")
    strict = PairedHistory(de.start, de.hourly, PairedSkill(min_share_saved=1.0, min_t=100.0))
    kw_s = dict(kw, series=forecast.with_paired(strict))
    worst = timed(lambda: plan_schedule(**kw_s), max(200, args.repeat // 4))
    print(
        f"  worst case, no start passes (the 384 best judged): median {statistics.median(worst) * 1e3:.3f} ms"
    )
    night = e.replace(hour=1, minute=0)
    kw_n = dict(
        kw,
        earliest=night - timedelta(hours=8),
        latest=night + timedelta(hours=8, minutes=30),
        p50_sec=1800.0,
        p90_sec=1800.0,
        step=timedelta(minutes=15),
        baseline=night,
    )
    for label, ser in (("forecast gate", forecast), ("paired rule", kw_p["series"])):
        kk = dict(kw_n, series=ser)
        t = statistics.median(timed(lambda kk=kk: plan_schedule(**kk), args.repeat))
        print(f"nightly 30-min job, +-8 h, 15-min grid ({label}): median {t * 1e3:.3f} ms")
    print("\nwindow days  starts  median ms  ms per 1k starts")
    for days in (1, 2, 4, 7, 14, 21, 28):
        k2 = dict(kw, latest=e + timedelta(days=days))
        t = statistics.median(timed(lambda k2=k2: plan_schedule(**k2), max(200, args.repeat // 4)))
        n = plan_schedule(**k2).total_count
        print(f"{days:>11}  {n:>6}  {t * 1e3:>9.3f}  {t * 1e3 / n * 1000:>16.3f}")


if __name__ == "__main__":
    main()
