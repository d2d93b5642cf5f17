"""Regenerate ``scheduling/data/paired_skill.json``: the paired rule's thresholds and per-zone skill, chosen
by leave-one-month-out cross-validation inside the shipped 2023 series only (README "How a start is chosen").

    .venv/bin/python scripts/paired_skill.py [--check]

Method (every figure out of sample):

- Scenarios: daily jobs of 30 and 60 min at 01:00, 07:00, 13:00 and 19:00 UTC, +-8 h window, 15-min grid,
  carbon-only weights, baseline = the nominal time.
- A decision on day ``d`` of month ``m`` sees only the history without month ``m``: its paired days are the
  ``N`` nearest days (52-week cycle) whose runs touch no hour of month ``m``; the choice among allowed
  starts is the paired days' mean (their climatology); the outcome is scored on day ``d``'s actual series.
- Thresholds (one set for every zone: few and robust rather than tuned per zone; min mean saving, min share
  of days saved, min t of the mean saving) maximise the mean over
  zones and scenarios of the share of the oracle's saving, each zone's share clipped at 0 so a grid
  without skill cannot pull the choice (it is switched off below instead); of the pairs within
  ``SCORE_TOLERANCE`` (0.02) of the best, the strictest (fewest moves) is taken.
- A zone may shift on history when its own out-of-sample share with those thresholds is at least
  ``MIN_ZONE_SHARE`` (0.5) in the reference scenario (30 min at 01:00), ``MIN_ZONE_MEAN_SHARE`` (0.3) on
  average over the scenarios, and no scenario loses more than ``MAX_SCENARIO_LOSS`` (0.05) of its oracle
  saving.
- Season: a zone that may shift still stays at its baseline in a calendar month and 6-hour band of the day
  (centred on a scenario hour) whose two neighbouring months, out of sample, kept less than
  ``MIN_SEASON_SHARE`` (0.2) of the oracle's saving for that hour's jobs (30 and 60 min together)
  (``seasons_off``): where the rule had no track record just before and just after, a move on the month's
  own history is a guess (German and Brazilian winter nights: the shape of the night changes with the
  weather, not the clock). Judged from the neighbours, never from the month itself.
- ``folds``: the same selection made without each month (nested: the inner decisions also leave out their
  own month), for ``orch backtest --forecast embedded --out-of-sample``: month m's decisions use history
  and thresholds fitted without month m.
``--check`` recomputes and compares with the shipped file instead of writing it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.carbon import embedded_history, embedded_zones  # noqa: E402
from scheduling.paired import (  # noqa: E402
    CYCLE_DAYS,
    PairedHistory,
    PairedSkill,
    months_of_cycle,
    paired_figures,
)

OUT = Path(__file__).resolve().parent.parent / "scheduling" / "data" / "paired_skill.json"
SCENARIOS = [(30, 1), (60, 1), (30, 7), (60, 7), (30, 13), (60, 13), (30, 19), (60, 19)]
REFERENCE = (30, 1)
WINDOW_H = 8
STEP_MIN = 15
GRID_MEAN = (0.0, 0.5, 1.0, 2.0)
GRID_SHARE = (0.5, 0.6, 0.7, 0.8)
GRID_T = (0.0, 2.0, 3.0)
GRID_DAYS = (29,)
MIN_ZONE_SHARE = 0.5  # the reference scenario's out-of-sample share a zone needs to shift on history ...
MIN_ZONE_MEAN_SHARE = 0.3  # ... its mean over all scenarios ...
MAX_SCENARIO_LOSS = 0.05  # ... and no scenario may lose more than this share of its oracle saving
SCORE_TOLERANCE = 0.02
MIN_SEASON_SHARE = 0.2  # a month stays at the baseline when its neighbours kept less than this, out of sample
MONTH_NAMES = [datetime(2023, m, 1).strftime("%B") for m in range(1, 13)]


class Scenario:
    """One zone and daily job: the (364, starts) matrix of actual run integrals and the baseline index."""

    def __init__(self, zone: str, job_min: int, hour: int) -> None:
        h = embedded_history(zone)
        self.zone, self.job_min, self.hour = zone, job_min, hour
        self.start = h.start
        self.hist = PairedHistory(h.start, np.asarray(h.values))
        self.n = 2 * WINDOW_H * 60 // STEP_MIN + 1
        self.b = WINDOW_H * 60 // STEP_MIN
        self.offsets = np.arange(self.n) * STEP_MIN * 60.0
        self.run = job_min * 60.0
        self.span = self.offsets[-1] + self.run
        ref = h.start + timedelta(hours=hour)
        self.ref = ref
        self.earliest = ref - timedelta(hours=WINDOW_H)
        self.A = self.hist.integrals(self.earliest, self.offsets, self.run, np.arange(CYCLE_DAYS), ref)
        self.month = months_of_cycle(h.start)
        self.masks: dict = {}  # (masked months, days) -> PairedHistory, shared by one zone's scenarios

    def rows_for(self, hist: PairedHistory, days: np.ndarray) -> list[np.ndarray]:
        return [
            hist.paired_days(
                self.ref + timedelta(days=int(d)), self.earliest + timedelta(days=int(d)), self.span
            )
            for d in days
        ]


def _masked(start, zone_values, months: set[int], days: int) -> PairedHistory:
    m = months_of_cycle(start)
    masked = np.flatnonzero(np.isin(m, sorted(months)))
    return PairedHistory(start, zone_values, PairedSkill(days=days), masked_days=masked)


def decide(sc: Scenario, rows: list[np.ndarray], days: np.ndarray, grid) -> dict:
    """Per threshold (and 'ungated'): total realised saving and the oracle's over ``days``."""
    out = {g: 0.0 for g in [*grid, "ungated"]}
    moves = {g: 0 for g in grid}
    oracle = 0.0
    for d, r in zip(days, rows, strict=True):
        actual = sc.A[d]
        oracle += actual[sc.b] - actual.min()
        hist = sc.A[r]
        mean, saved, t = paired_figures(hist[:, sc.b], hist)
        share = saved / max(r.size, 1)
        fc = hist.mean(axis=0)
        out["ungated"] += actual[sc.b] - actual[int(np.argmin(fc))]
        for g in grid:
            mm, ms, mt = g
            ok = (mean >= mm - 1e-9) & (share >= ms - 1e-9) & (t >= mt - 1e-9)
            ok[sc.b] = True
            i = int(np.argmin(np.where(ok, fc, np.inf)))
            out[g] += actual[sc.b] - actual[i]
            moves[g] += i != sc.b
    return {"saved": out, "oracle": oracle, "moves": moves}


def lomo(scs: dict, exclude: set[int], grid, days_n: int) -> dict:
    """Out-of-sample totals per (zone, scenario) over the months not in ``exclude``, each month decided
    without itself and without ``exclude``."""
    res: dict = {}
    months = [m for m in range(1, 13) if m not in exclude]
    for key, sc in scs.items():
        tot_saved = {g: 0.0 for g in [*grid, "ungated"]}
        tot_moves = {g: 0 for g in grid}
        tot_oracle = 0.0
        per_month = {}
        for m in months:
            hist = sc.masks[(frozenset(exclude | {m}), days_n)]
            dd = np.flatnonzero(sc.month == m)
            r = decide(sc, sc.rows_for(hist, dd), dd, grid)
            per_month[m] = r
            tot_oracle += r["oracle"]
            for g in tot_saved:
                tot_saved[g] += r["saved"][g]
            for g in tot_moves:
                tot_moves[g] += r["moves"][g]
        res[key] = {"saved": tot_saved, "oracle": tot_oracle, "months": per_month, "moves": tot_moves}
    return res


def share(r: dict, g) -> float:
    return r["saved"][g] / r["oracle"] if r["oracle"] > 0 else 0.0


def select(res: dict, zones: list[str], grid) -> tuple:
    """The strictest thresholds (the fewest moves over every zone and scenario) whose score is within
    ``SCORE_TOLERANCE`` of the best: 2023's own optimum is not worth trusting to the last point, a stricter
    rule costs little here and protects other years."""

    def score(g) -> float:
        return float(np.mean([max(share(res[(z, s)], g), 0.0) for z in zones for s in SCENARIOS]))

    scores = {g: score(g) for g in grid}
    best = max(scores.values())
    moves = {g: sum(res[(z, s)]["moves"][g] for z in zones for s in SCENARIOS) for g in grid}
    return min((g for g in grid if scores[g] >= best - SCORE_TOLERANCE), key=lambda g: (moves[g], g))


def zone_rows(res: dict, zones: list[str], g) -> dict:
    out = {}
    for z in zones:
        ref = share(res[(z, REFERENCE)], g)
        ung = share(res[(z, REFERENCE)], "ungated")
        all_s = [share(res[(z, s)], g) for s in SCENARIOS]
        mean_s = float(np.mean(all_s))
        worst = min(all_s)
        allowed = ref >= MIN_ZONE_SHARE and mean_s >= MIN_ZONE_MEAN_SHARE and worst >= -MAX_SCENARIO_LOSS
        reason = ""
        if not allowed:
            reason = (
                f"out of sample in 2023 the paired rule kept {ref:.2f} of the oracle's saving for a nightly "
                f"job ({mean_s:.2f} on average over {len(SCENARIOS)} job scenarios, worst {worst:.2f}; "
                f"needed {MIN_ZONE_SHARE}, {MIN_ZONE_MEAN_SHARE} and >= -{MAX_SCENARIO_LOSS}): this grid's "
                "daily shape does not repeat reliably enough to shift on history alone"
            )
        out[z] = {
            "allowed": bool(allowed),
            "share_of_oracle_reference": round(float(ref), 3),
            "share_of_oracle_ungated_reference": round(float(ung), 3),
            "share_of_oracle_mean": round(float(mean_s), 3),
            "share_of_oracle_worst": round(float(worst), 3),
            **({"reason": reason} if reason else {}),
        }
    return out


def seasons_off(res: dict, zone: str, g, months: list[int]) -> list[dict]:
    """The (month of ``months``, scenario hour) seasons in which ``zone`` stays at its baseline: the
    out-of-sample share of the oracle's saving the rule (thresholds ``g``) kept in the two neighbouring
    months for that hour's jobs is below ``MIN_SEASON_SHARE``. A neighbour missing from ``res`` (the
    held-out month of a fold) is skipped; with no neighbour the season stays on."""
    out: list[dict] = []
    for m in months:
        for hour in sorted({h for _, h in SCENARIOS}):
            scs = [s for s in SCENARIOS if s[1] == hour]
            nb = [k for k in ((m - 2) % 12 + 1, m % 12 + 1) if k in res[(zone, scs[0])]["months"]]
            saved = sum(res[(zone, s)]["months"][k]["saved"][g] for s in scs for k in nb)
            oracle = sum(res[(zone, s)]["months"][k]["oracle"] for s in scs for k in nb)
            if not nb or oracle <= 0 or saved / oracle >= MIN_SEASON_SHARE:
                continue
            names = " and ".join(MONTH_NAMES[k - 1] for k in nb)
            band = f"{(hour - 3) % 24:02d}-{(hour + 3) % 24:02d} h UTC"
            out.append(
                {
                    "month": m,
                    "hour": hour,
                    "reason": (
                        f"in {MONTH_NAMES[m - 1]} at {band} the paired rule has no track record: out of "
                        f"sample in 2023 it kept {saved / oracle:.2f} of the oracle's saving at these hours "
                        f"in {names} (needed {MIN_SEASON_SHARE}): the shape of the day does not repeat "
                        "reliably enough at this time of year to shift on history alone"
                    ),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--no-folds", action="store_true", help="skip the per-month folds (faster; prints only)")
    args = ap.parse_args()
    zones = list(embedded_zones())
    grid = list(itertools.product(GRID_MEAN, GRID_SHARE, GRID_T))
    scs: dict = {}
    for z in zones:
        h = embedded_history(z)
        vals = np.asarray(h.values)
        cache: dict = {}
        for s in SCENARIOS:
            sc = Scenario(z, *s)
            sc.masks = cache
            scs[(z, s)] = sc
        for dn in GRID_DAYS:
            for m in range(1, 13):
                cache[(frozenset({m}), dn)] = _masked(h.start, vals, {m}, dn)
                if not args.no_folds:
                    for j in range(1, 13):
                        if j != m:
                            cache[(frozenset({m, j}), dn)] = _masked(h.start, vals, {m, j}, dn)
    dn = GRID_DAYS[0]
    res = lomo(scs, set(), grid, dn)
    g = select(res, zones, grid)
    table: dict = {
        "method": (
            "leave-one-month-out cross-validation inside the shipped 2023 hourly series "
            "(scripts/paired_skill.py): daily jobs "
            f"{', '.join(f'{j} min at {h:02d}:00' for j, h in SCENARIOS)} UTC, +-{WINDOW_H} h window, "
            f"{STEP_MIN}-min starts, carbon-only weights; month m is decided with paired days that touch no "
            "hour of month m; thresholds maximise the mean over zones and scenarios of the share of the "
            f"oracle (clipped at 0), taking the strictest set (fewest moves) within {SCORE_TOLERANCE} of the "
            "best; "
            f"a zone may shift when its share is >= {MIN_ZONE_SHARE} in the reference scenario "
            f"({REFERENCE[0]} min at {REFERENCE[1]:02d}:00), >= {MIN_ZONE_MEAN_SHARE} on average over the "
            f"scenarios, and no scenario loses more than {MAX_SCENARIO_LOSS} of its oracle saving"
        ),
        "thresholds": {"min_mean_saving_pct": g[0], "min_share_saved": g[1], "min_t": g[2], "days": dn},
        "grid": {
            "min_mean_saving_pct": list(GRID_MEAN),
            "min_share_saved": list(GRID_SHARE),
            "min_t": list(GRID_T),
        },
        "zones": zone_rows(res, zones, g),
    }
    for z, row in table["zones"].items():
        if row["allowed"]:
            row["seasons_off"] = seasons_off(res, z, g, list(range(1, 13)))
    for z, row in table["zones"].items():
        print(z, {k: v for k, v in row.items() if k != "seasons_off"})
        print("   seasons off:", [(o["month"], o["hour"]) for o in row.get("seasons_off", [])])
    print("thresholds", table["thresholds"])
    if not args.no_folds:
        folds = {}
        for m in range(1, 13):
            rm = lomo(scs, {m}, grid, dn)
            gm = select(rm, zones, grid)
            zr = zone_rows(rm, zones, gm)
            for z, row in zr.items():
                if row["allowed"]:
                    row["seasons_off"] = seasons_off(rm, z, gm, [m])
            folds[str(m)] = {
                "thresholds": {
                    "min_mean_saving_pct": gm[0],
                    "min_share_saved": gm[1],
                    "min_t": gm[2],
                    "days": dn,
                },
                "zones": {
                    z: {k: v for k, v in r.items() if k in ("allowed", "reason", "seasons_off")}
                    for z, r in zr.items()
                },
            }
            print(
                "fold",
                m,
                folds[str(m)]["thresholds"],
                [z for z, r in zr.items() if not r["allowed"]],
                {z: [o["hour"] for o in r["seasons_off"]] for z, r in zr.items() if r.get("seasons_off")},
            )
        table["folds"] = folds
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print(
            "paired_skill.json is up to date" if same else "paired_skill.json differs: rerun without --check"
        )
        sys.exit(0 if same else 1)
    if args.no_folds:  # a table without folds would break the out-of-sample backtest: never written
        print("not written (--no-folds)")
        return
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.name}")


if __name__ == "__main__":
    main()
