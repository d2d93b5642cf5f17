"""Does the planner trade deadline risk for tiny savings? Does the embedded forecast make things worse?

    .venv/bin/python bench/bench_probe.py                 # all tables, probe every 3rd hour of 2023
    .venv/bin/python bench/bench_probe.py --every 1       # every hour (slower)
    .venv/bin/python bench/bench_probe.py --part probe    # or: halves, loo

1. ``probe`` (issue 11): per embedded zone, one plan per sampled hour ``T`` of 2023 with the embedded
   forecast (the 2023 climatology, as the ``embedded`` provider serves it): window ``[T, T + 3 h]``,
   1-hour job (p50 1 h, p90 1.5 h: the no-history default), NEUTRAL, default weights, on-demand.
   Prints the share of plans that move off the baseline (``T``), the median expected saving of the moved
   plans (as forecast, with the median forecast sigma), their median added miss risk, the largest added
   risk per 1 % of expected saving, and the mean *actual* saving on the 2023 series (in-sample for the
   climatology, so an upper bound). Runs on any version of the planner: with ``PYTHONPATH=<checkout>`` it
   measures that checkout (an old planner without sigma or a skill gate is probed the same way).
2. ``halves``: out of sample. The climatology is fitted on one half of 2023 (Jan-Jun or Jul-Dec: no season,
   see ``scheduling.forecast.climatology_forecast``) and judged on the other half's actual series: nightly
   01:00 1-hour job that may move +-8 h, CONSERVATIVE, carbon-only weights (the ``orch backtest``
   defaults), baseline = 01:00. Prints the share of the oracle's saving, with the product's skill gate and
   without it, and how often the gate kept the baseline.
3. ``loo``: the product's full-year climatology on 2023 with each judged day's own data left out of its
   29-day mean (same climate, other weather), same nightly job; gated and ungated share of the oracle.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))  # append: a PYTHONPATH checkout wins

from scheduling import scoring  # noqa: E402
from scheduling.carbon import CarbonSeries, embedded_history, embedded_zones  # noqa: E402
from scheduling.forecast import climatology_forecast  # noqa: E402
from scheduling.scoring import RiskMode, Weights, plan_schedule  # noqa: E402

H = timedelta(hours=1)
Y0 = datetime(2023, 1, 1, tzinfo=UTC)
MID = datetime(2023, 7, 2, tzinfo=UTC)  # 182 days: Jan-Jun | Jul-Dec
Y1 = datetime(2023, 12, 31, tzinfo=UTC)
HAS_POLICY = "policy" in inspect.signature(plan_schedule).parameters


def probe(zone: str, every: int) -> dict:
    actual = embedded_history(zone)
    moved, saving, sigma, risk, ratio, actual_saving = 0, [], [], [], [], []
    n = 0
    t = Y0 + 24 * H
    while t + 4 * H <= Y1:
        fc = climatology_forecast(actual, t, t + 4 * H)
        p = plan_schedule(
            earliest=t,
            latest=t + 3 * H,
            p50_sec=3600.0,
            p90_sec=5400.0,
            series=fc,
            power_kw=1.0,
            risk_mode=RiskMode.NEUTRAL,
            weights=Weights(),
        )
        n += 1
        c, b = p.chosen, p.baseline
        a_c = actual.integral(c.start, c.start + H)
        a_b = actual.integral(b.start, b.start + H)
        actual_saving.append((a_b - a_c) / a_b * 100 if a_b > 0 else 0.0)
        if c.start != b.start:
            moved += 1
            saving.append(c.saving_vs_earliest_pct)
            sigma.append(getattr(c, "saving_sigma_pct", float("nan")))
            added = (c.risk - b.risk) * 100
            risk.append(added)
            ratio.append(added / max(c.saving_vs_earliest_pct, 1e-9))
        t += every * H
    med = statistics.median
    return {
        "plans": n,
        "moved": moved / n,
        "saving": med(saving) if saving else None,
        "sigma": med(sigma) if sigma else None,
        "risk": med(risk) if risk else None,
        "ratio": max(ratio) if ratio else None,
        "actual": float(np.mean(actual_saving)),
    }


def judge(train: CarbonSeries, actual: CarbonSeries, gated: bool) -> tuple[float, float, int, float, float]:
    """(share of the oracle, saving %, nights, share kept at the baseline, oracle saving %) for nightly
    01:00 +-8 h."""
    base_g = chosen_g = oracle_g = 0.0
    n = stayed = 0
    day = actual.start + 24 * H
    while day + 34 * H <= actual.end:
        nominal = day + H
        E, L = nominal - 8 * H, nominal + 9 * H
        kw = dict(
            earliest=E,
            latest=L,
            p50_sec=3600.0,
            p90_sec=3600.0,
            power_kw=1.0,
            risk_mode=RiskMode.CONSERVATIVE,
            weights=Weights(1, 0, 0),
            top_k=1,
            baseline=nominal,
        )
        fc = climatology_forecast(train, E, L)
        p = plan_schedule(series=fc, policy=None if gated else scoring.UNGATED, **kw)
        o = plan_schedule(series=actual, policy=scoring.UNGATED, **kw)
        base_g += actual.integral(nominal, nominal + H)
        chosen_g += actual.integral(p.chosen.start, p.chosen.start + H)
        oracle_g += actual.integral(o.chosen.start, o.chosen.start + H)
        stayed += p.chosen.start == nominal
        n += 1
        day += 24 * H
    share = (base_g - chosen_g) / (base_g - oracle_g) if base_g > oracle_g else float("nan")
    return share, (base_g - chosen_g) / base_g * 100, n, stayed / n, (base_g - oracle_g) / base_g * 100


def leave_one_day_out(zone: str) -> tuple[float, float, float]:
    """(share of the oracle gated, ungated, share of nights kept at the baseline) when each day of 2023 is
    forecast by the full-year climatology with that day's own data removed from its 29-day mean: the same
    climate, other weather. Nightly 01:00, +-8 h, 1-hour job, CONSERVATIVE, carbon-only weights."""
    from scheduling import forecast as fmod

    full = embedded_history(zone)
    y = full.values[: 364 * 24]
    table, sig = fmod._climatology_table(y)
    days = y.reshape(364, 24)
    prof = fmod._centred_mean(days, 14)
    loo = (29 * prof - days) / 28 * (table / np.maximum(prof, 1e-9))
    fc = CarbonSeries(full.start, H, loo.ravel(), sig.ravel())
    base = chosen = ungated = oracle = 0.0
    stayed = n = 0
    day = full.start + 2 * 24 * H
    while day + 34 * H <= full.start + 362 * 24 * H:
        nominal = day + H
        kw = dict(
            earliest=nominal - 8 * H,
            latest=nominal + 9 * H,
            p50_sec=3600.0,
            p90_sec=3600.0,
            power_kw=1.0,
            risk_mode=RiskMode.CONSERVATIVE,
            weights=Weights(1, 0, 0),
            top_k=1,
            baseline=nominal,
        )
        p = plan_schedule(series=fc, **kw)
        u = plan_schedule(series=fc, policy=scoring.UNGATED, **kw)
        o = plan_schedule(series=full, policy=scoring.UNGATED, **kw)
        base += full.integral(nominal, nominal + H)
        chosen += full.integral(p.chosen.start, p.chosen.start + H)
        ungated += full.integral(u.chosen.start, u.chosen.start + H)
        oracle += full.integral(o.chosen.start, o.chosen.start + H)
        stayed += p.chosen.start == nominal
        n += 1
        day += 24 * H
    return (base - chosen) / (base - oracle), (base - ungated) / (base - oracle), stayed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=3, help="probe every N hours of 2023 (default 3)")
    ap.add_argument("--part", choices=["probe", "halves", "loo", "all"], default="all")
    args = ap.parse_args()
    zones = embedded_zones()
    if args.part in ("probe", "all"):
        print(f"## probe: 3-hour window, 1-hour job, NEUTRAL, default weights (every {args.every} h of 2023)")
        print(
            f"planner: {'skill-gated (sigma, Policy)' if HAS_POLICY else 'no skill gate (min-max scores)'}\n"
        )
        print(
            "| zone | plans | moved | median expected saving (moved) | median sigma | median added risk "
            "(moved) | max added risk per 1 % saving | mean actual saving, all plans |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for z in zones:
            r = probe(z, args.every)

            def f(x, fmt):
                return "-" if x is None or x != x else fmt.format(x)

            print(
                f"| {z} | {r['plans']} | {r['moved'] * 100:.1f} % | {f(r['saving'], '{:.2f} %')} | "
                f"{f(r['sigma'], '{:.2f} pts')} | {f(r['risk'], '{:.1f} pts')} | {f(r['ratio'], '{:.2f}')} | "
                f"{r['actual']:.2f} % |"
            )
            sys.stdout.flush()
    if args.part in ("halves", "all") and HAS_POLICY:
        print(
            "\n## halves: climatology fitted on one half of 2023, judged on the other (nightly 01:00 +-8 h)\n"
        )
        print(
            "| zone | train -> judge | nights | oracle saving | share of oracle, gated | kept baseline "
            "| share of oracle, ungated |"
        )
        print("|---|---|---|---|---|---|---|")
        for z in zones:
            full = embedded_history(z)
            a, b = full.slice(Y0, MID), full.slice(MID, Y1)
            for name, train, test in (("Jan-Jun -> Jul-Dec", a, b), ("Jul-Dec -> Jan-Jun", b, a)):
                share, _, n, stayed, o = judge(train, test, gated=True)
                share_u = judge(train, test, gated=False)[0]
                print(
                    f"| {z} | {name} | {n} | {o:.1f} % | {share * 100:.1f} % | {stayed * 100:.0f} % | "
                    f"{share_u * 100:.1f} % |"
                )
                sys.stdout.flush()

    if args.part in ("loo", "all") and HAS_POLICY:
        print(
            "\n## leave-one-day-out: the 2023 climatology without the day's own data (nightly 01:00 +-8 h)\n"
        )
        print("| zone | share of oracle, gated | kept baseline | share of oracle, no gate |")
        print("|---|---|---|---|")
        for z in zones:
            g, u, stayed = leave_one_day_out(z)
            print(f"| {z} | {g * 100:.1f} % | {stayed * 100:.0f} % | {u * 100:.1f} % |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
