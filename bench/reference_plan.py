"""A straightforward per-candidate implementation of the scheduling model, for benchmarks and cross-checks.

Same model as ``scheduling.scoring.plan_schedule`` (ARCHITECTURE.md "Scheduling model"), written the
obvious way: for every candidate start, walk the series intervals that overlap ``[s, s + p50]`` and add
up intensity x overlap; risk from ``math.erfc``; carbon relative to the first feasible start (the
baseline); then pick the minimum of the objective (ties -> earliest), no skill gate
(``scoring.UNGATED``).
No prefix sums, no numpy. Returns the chosen start and its emissions (gCO2e).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from scheduling.carbon import CarbonSeries
from scheduling.scoring import Z90, RiskMode, Weights


def reference_choice(
    *,
    earliest: datetime,
    latest: datetime,
    p50_sec: float,
    p90_sec: float,
    series: CarbonSeries,
    power_kw: float,
    risk_mode: RiskMode,
    weights: Weights,
    step: timedelta = timedelta(minutes=15),
) -> tuple[datetime, float]:
    """Chosen start and its emissions (gCO2e) for an on-demand fleet with a deadline."""
    window = (latest - earliest).total_seconds()
    need = p90_sec if risk_mode is RiskMode.CONSERVATIVE else p50_sec
    sigma = math.log(p90_sec / p50_sec) / Z90
    dt = series.step.total_seconds()
    values = [float(v) for v in series.values]
    base = (earliest - series.start).total_seconds()

    starts, emissions, risks, slacks = [], [], [], []
    k = 0
    while k * step.total_seconds() < window:
        s = k * step.total_seconds()
        k += 1
        if s + need > window + 1e-6:
            continue
        a, b = base + s, base + s + p50_sec
        total = 0.0
        i = int(a // dt)
        while i < len(values) and i * dt < b:
            lo, hi = max(a, i * dt), min(b, (i + 1) * dt)
            if hi > lo:
                total += values[i] * (hi - lo)
            i += 1
        remaining = window - s
        if sigma == 0:
            risk = 1.0 if p50_sec > remaining + 1e-6 else 0.0
        else:
            z = (math.log(remaining) - math.log(p50_sec)) / sigma
            risk = 0.5 * math.erfc(z / math.sqrt(2))
        starts.append(s)
        emissions.append(power_kw * total / 3600.0)
        risks.append(risk)
        slacks.append(min(1.0, max(0.0, (window - s - p90_sec) / window)))

    base_e = emissions[0]
    wsum = weights.carbon + weights.risk + weights.slack
    best_i, best_obj = 0, math.inf
    for i in range(len(starts)):
        carbon = (emissions[i] - base_e) / base_e if base_e > 0 else 0.0
        obj = (weights.carbon * carbon + weights.risk * risks[i] + weights.slack * (1 - slacks[i])) / wsum
        if obj < best_obj - 1e-9:
            best_i, best_obj = i, obj
    return earliest + timedelta(seconds=starts[best_i]), emissions[best_i]
