"""Candidate scoring and the choice of a start time (ARCHITECTURE.md, "Scheduling model").

Model, for a window ``[E, L]`` and candidate starts ``s = E + k*step`` with ``s < L``:

- Runtime ``T`` is lognormal through ``p50`` and ``p90``: ``mu = ln p50``, ``sigma = ln(p90/p50)/1.2816``
  (``p90 == p50`` means a deterministic runtime).
- Emissions of a start (gCO2e) = ``power_kw`` (fleet kW, PUE included) x the integral of intensity (g/kWh)
  over ``[s, s + p50]``, computed for every start at once from prefix sums: O(n).
- Scores, each in [0, 1]:
  ``carbon`` = emissions min-max normalised over the feasible starts (0 = cleanest; all equal -> 0);
  ``risk`` = P(T > L - s), the deadline-miss probability (with spot capacity:
  ``1 - (1 - P(miss)) * (1 - spot_interruption_prob)``);
  ``slack`` = ``(L - (s + p90)) / (L - E)`` clipped to [0, 1] (1 = most buffer).
- Objective (minimised) = ``(w_c*carbon + w_r*risk + w_s*(1 - slack)) / (w_c + w_r + w_s)``;
  ties (within 1e-9) go to the earliest start.

Risk modes (feasibility and capacity):

- ``CONSERVATIVE``: a start is feasible when its p90 finish is <= L. Always on-demand capacity.
- ``NEUTRAL``: feasible when its p50 finish is <= L. On-demand, unless spot is nearly free of risk and
  recoverable: ``spot_interruption_prob <= 0.05`` (``NEUTRAL_SPOT_MAX_PROB``) and the window is long enough
  for an on-demand rerun after a late interruption (``L - E >= p50 + p90``, or no deadline). Then spot.
- ``AGGRESSIVE``: feasible when its p50 finish is <= L. Spot first whenever spot is offered
  (see below), relying on the workflow to relaunch on-demand
  after an interruption while the window allows; the interruption probability is part of the risk score.

Spot is only considered when ``0 < spot_interruption_prob < 1``: the default 0.0 means "no spot
information" and 1.0 means "spot not offered" (``catalog.spot_interruption_probability`` never returns 0
for an offered type, since even the lowest Spot Advisor bin has a positive midpoint).

``latest=None`` (a ONE_TIME job with no deadline): one candidate at ``earliest``, risk 0, slack 1.
``fixed_start=True``: one candidate at ``earliest`` (still checked against ``latest`` when given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from scheduling.carbon import CarbonSeries

__all__ = [
    "AGGRESSIVE_SPOT_MAX_PROB",
    "NEUTRAL_SPOT_MAX_PROB",
    "Candidate",
    "InfeasibleWindow",
    "Plan",
    "RiskMode",
    "Weights",
    "lognormal_sigma",
    "plan_schedule",
    "prob_exceeds",
]

Z90 = 1.2815515655446004  # standard normal 90th percentile
NEUTRAL_SPOT_MAX_PROB = 0.05
AGGRESSIVE_SPOT_MAX_PROB = 1.0  # exclusive: spot is used whenever it is offered
TIE_TOL = 1e-9  # objective differences below this are ties (float noise of prefix sums)
_FEAS_TOL_SEC = 1e-6


class RiskMode(StrEnum):
    CONSERVATIVE = "CONSERVATIVE"
    NEUTRAL = "NEUTRAL"
    AGGRESSIVE = "AGGRESSIVE"


@dataclass(frozen=True)
class Weights:
    """Objective weights (non-negative, positive sum; only their ratios matter)."""

    carbon: float = 0.5
    risk: float = 0.4
    slack: float = 0.1

    def __post_init__(self) -> None:
        vals = (self.carbon, self.risk, self.slack)
        if any(not isinstance(v, int | float) or not math.isfinite(v) or v < 0 for v in vals):
            raise ValueError(
                f"weights must be finite and >= 0, got carbon={self.carbon}, "
                f"risk={self.risk}, slack={self.slack}"
            )
        if sum(vals) <= 0:
            raise ValueError("weights must have a positive sum")

    @property
    def total(self) -> float:
        return self.carbon + self.risk + self.slack

    @classmethod
    def parse(cls, text: str) -> Weights:
        """``"carbon=1,risk=0,slack=0"`` -> Weights (missing keys keep their defaults)."""
        kw: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, val = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("carbon", "risk", "slack"):
                raise ValueError(f"bad weight {part!r}: expected carbon=..,risk=..,slack=..")
            try:
                kw[key] = float(val)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: {val!r} is not a number") from None
        return cls(**kw)

    def to_dict(self) -> dict[str, float]:
        return {"carbon": self.carbon, "risk": self.risk, "slack": self.slack}


@dataclass(frozen=True)
class Candidate:
    """One start time and its scores. Times are UTC; ``emissions_g`` in gCO2e over the p50 runtime;
    ``saving_vs_earliest_pct`` is the emissions saving against starting at ``earliest`` (negative = more)."""

    start: datetime
    finish_p50: datetime
    finish_p90: datetime
    carbon: float
    risk: float
    slack: float
    objective: float
    emissions_g: float
    saving_vs_earliest_pct: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposed_start": _iso(self.start),
            "estimated_finish_p50": _iso(self.finish_p50),
            "estimated_finish_p90": _iso(self.finish_p90),
            "scores": {"carbon": self.carbon, "risk": self.risk, "slack": self.slack},
            "objective": self.objective,
            "estimated_gco2e": self.emissions_g,
            "saving_vs_earliest_pct": self.saving_vs_earliest_pct,
        }


@dataclass(frozen=True)
class Plan:
    """The chosen start, the top candidates (chosen first), the earliest-start baseline and why."""

    chosen: Candidate
    candidates: list[Candidate]
    baseline: Candidate
    rationale: str
    capacity: str  # "on-demand" | "spot"
    feasible_count: int
    total_count: int
    risk_mode: RiskMode = RiskMode.CONSERVATIVE
    spot_interruption_prob: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "baseline": self.baseline.to_dict(),
            "rationale": self.rationale,
            "capacity": self.capacity,
            "feasible_count": self.feasible_count,
            "total_count": self.total_count,
            "risk_mode": str(self.risk_mode),
        }


class InfeasibleWindow(ValueError):
    """No start in the window can meet the risk mode's deadline rule (the message names the numbers)."""


# --------------------------------------------------------------------------- math helpers


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, fractional error < 1.2e-7 (Numerical Recipes ``erfcc``)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    ans = t * np.exp(poly)
    return np.where(x >= 0, ans, 2.0 - ans)


def lognormal_sigma(p50_sec: float, p90_sec: float) -> float:
    """Log-space sigma of the lognormal through p50 and p90 (0 when they are equal)."""
    return math.log(p90_sec / p50_sec) / Z90


def prob_exceeds(limit_sec: np.ndarray, p50_sec: float, p90_sec: float) -> np.ndarray:
    """P(runtime > limit) for the lognormal through p50/p90, vectorised; limits <= 0 give 1."""
    limit = np.asarray(limit_sec, dtype=np.float64)
    sigma = lognormal_sigma(p50_sec, p90_sec)
    out = np.ones_like(limit)
    pos = limit > 0
    if sigma <= 0:
        out[pos] = (p50_sec > limit[pos] + _FEAS_TOL_SEC).astype(np.float64)
        return out
    z = (np.log(limit[pos]) - math.log(p50_sec)) / sigma
    out[pos] = 0.5 * _erfc(z / math.sqrt(2.0))
    return np.clip(out, 0.0, 1.0)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fmt_dur(sec: float) -> str:
    sec = float(sec)
    if sec < 120:
        return f"{sec:g} s"
    if sec < 7200:
        return f"{sec / 60:.0f} min"
    return f"{sec / 3600:.1f} h"


def _fmt_time(t: datetime, ref: datetime) -> str:
    t = t.astimezone(UTC)
    return f"{t:%H:%M}Z" if t.date() == ref.astimezone(UTC).date() else f"{t:%Y-%m-%d %H:%M}Z"


def _as_utc(t: datetime, name: str) -> datetime:
    if not isinstance(t, datetime):
        raise ValueError(f"{name} must be a datetime")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return t.astimezone(UTC)


# --------------------------------------------------------------------------- the planner


def _capacity(mode: RiskMode, p_int: float, window_sec: float | None, p50: float, p90: float) -> str:
    if mode is RiskMode.CONSERVATIVE or not 0.0 < p_int < 1.0:
        return "on-demand"
    if mode is RiskMode.NEUTRAL:
        recoverable = window_sec is None or window_sec + _FEAS_TOL_SEC >= p50 + p90
        return "spot" if p_int <= NEUTRAL_SPOT_MAX_PROB and recoverable else "on-demand"
    return "spot" if p_int < AGGRESSIVE_SPOT_MAX_PROB else "on-demand"  # always, once offered


def plan_schedule(
    *,
    earliest: datetime,
    latest: datetime | None,
    p50_sec: float,
    p90_sec: float,
    series: CarbonSeries,
    power_kw: float,
    risk_mode: RiskMode,
    weights: Weights,
    spot_interruption_prob: float = 0.0,
    step: timedelta = timedelta(minutes=15),
    top_k: int = 5,
    fixed_start: bool = False,
    notes: list[str] | None = None,
) -> Plan:
    """Choose the start in ``[earliest, latest)`` that minimises the weighted objective (see module doc).

    Units: times tz-aware UTC; ``p50_sec``/``p90_sec`` runtime quantiles in seconds; ``series`` intensity in
    g/kWh covering ``[earliest, latest]`` (or ``[earliest, earliest + p90]`` without a deadline);
    ``power_kw`` fleet power in kW including PUE; ``spot_interruption_prob`` the probability that a spot
    fleet is interrupted during the run (1.0 = spot not offered); ``step`` the candidate grid.
    Raises :class:`InfeasibleWindow` when no start meets the mode's deadline rule, ValueError on bad input.
    """
    mode = RiskMode(risk_mode)
    if not isinstance(weights, Weights):
        raise ValueError("weights must be a Weights instance")
    E = _as_utc(earliest, "earliest")
    L = None if latest is None else _as_utc(latest, "latest")
    p50, p90 = float(p50_sec), float(p90_sec)
    if not (math.isfinite(p50) and p50 > 0):
        raise ValueError(f"p50_sec must be a positive number of seconds, got {p50_sec}")
    if not (math.isfinite(p90) and p90 >= p50):
        raise ValueError(f"p90_sec must be >= p50_sec ({p50:g} s), got {p90_sec}")
    if not (math.isfinite(power_kw) and power_kw >= 0):
        raise ValueError(f"power_kw must be >= 0, got {power_kw}")
    p_int = float(spot_interruption_prob)
    if not 0.0 <= p_int <= 1.0:
        raise ValueError(f"spot_interruption_prob must be in [0, 1], got {spot_interruption_prob}")
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    step_sec = step.total_seconds()
    need = p90 if mode is RiskMode.CONSERVATIVE else p50
    need_name = "p90" if mode is RiskMode.CONSERVATIVE else "p50"

    window = None
    if L is not None:
        window = (L - E).total_seconds()
        if window <= 0:
            raise InfeasibleWindow(f"latest_finish {_iso(L)} must be after earliest_start {_iso(E)}")
        if need > window + _FEAS_TOL_SEC:
            raise InfeasibleWindow(
                f"{mode}: the window {_iso(E)} .. {_iso(L)} is {_fmt_dur(window)} long but the job needs "
                f"{_fmt_dur(need)} (its {need_name} runtime; p50 {_fmt_dur(p50)}, p90 {_fmt_dur(p90)}), "
                f"so no start finishes by latest_finish"
            )
    horizon_end = L if L is not None else E + timedelta(seconds=p90)
    if not series.covers(E, horizon_end):
        raise ValueError(
            f"carbon series [{_iso(series.start)}, {_iso(series.end)}) does not cover "
            f"[{_iso(E)}, {_iso(horizon_end)}]"
        )

    # Candidate starts as offsets (s) from E; feasible ones are a prefix since finish grows with s.
    if fixed_start or window is None:
        total = n_feas = 1
    else:
        total = max(1, math.ceil(window / step_sec - 1e-9))
        n_feas = min(total, int((window - need + _FEAS_TOL_SEC) // step_sec) + 1)
    s = np.arange(n_feas, dtype=np.float64) * step_sec

    sub = series.slice(E, horizon_end)
    off = (E - sub.start).total_seconds()
    prefix = sub.prefix()
    integ = sub.cumulative(off + s + p50, prefix) - sub.cumulative(off + s, prefix)  # g/kWh x s
    emissions = integ * (power_kw / 3600.0)  # gCO2e

    capacity = _capacity(mode, p_int, window, p50, p90)
    if window is None:
        risk = np.zeros(n_feas)
        slack = np.ones(n_feas)
    else:
        risk = prob_exceeds(window - s, p50, p90)
        if capacity == "spot":
            risk = 1.0 - (1.0 - risk) * (1.0 - p_int)
        slack = np.clip((window - s - p90) / window, 0.0, 1.0)

    emin, emax = float(emissions.min()), float(emissions.max())
    if emax - emin <= 1e-9 * max(abs(emax), 1e-12):
        carbon = np.zeros(n_feas)
    else:
        carbon = np.clip((emissions - emin) / (emax - emin), 0.0, 1.0)
    wt = weights.total
    objective = (weights.carbon * carbon + weights.risk * risk + weights.slack * (1.0 - slack)) / wt

    best = float(objective.min())
    chosen_i = int(np.argmax(objective <= best + TIE_TOL))  # first (earliest) within the tie tolerance
    k = min(top_k, n_feas)
    part = np.argpartition(objective, k - 1)[:k] if n_feas > k else np.arange(n_feas)
    part = part[np.lexsort((part, objective[part]))]
    order = [chosen_i] + [int(i) for i in part if i != chosen_i][: k - 1]

    base_e = float(emissions[0])
    d50, d90 = timedelta(seconds=p50), timedelta(seconds=p90)

    def cand(i: int) -> Candidate:
        st = E + step * i
        e = float(emissions[i])
        saving = (base_e - e) / base_e * 100.0 if base_e > 0 else 0.0
        return Candidate(
            start=st,
            finish_p50=st + d50,
            finish_p90=st + d90,
            carbon=float(carbon[i]),
            risk=float(risk[i]),
            slack=float(slack[i]),
            objective=float(objective[i]),
            emissions_g=e,
            saving_vs_earliest_pct=saving,
        )

    candidates = [cand(i) for i in order]
    chosen = candidates[0]
    baseline = chosen if chosen_i == 0 else cand(0)
    rationale = _rationale(
        mode,
        E,
        L,
        chosen,
        baseline,
        n_feas,
        total,
        need_name,
        capacity,
        p_int,
        fixed_start,
        flat=emax - emin <= 1e-9 * max(abs(emax), 1e-12),
        notes=notes or [],
    )
    return Plan(
        chosen=chosen,
        candidates=candidates,
        baseline=baseline,
        rationale=rationale,
        capacity=capacity,
        feasible_count=n_feas,
        total_count=total,
        risk_mode=mode,
        spot_interruption_prob=p_int,
        notes=tuple(notes or ()),
    )


def _rationale(
    mode: RiskMode,
    E: datetime,
    L: datetime | None,
    chosen: Candidate,
    baseline: Candidate,
    n_feas: int,
    total: int,
    need_name: str,
    capacity: str,
    p_int: float,
    fixed_start: bool,
    flat: bool,
    notes: list[str],
) -> str:
    when = _fmt_time(chosen.start, E)
    parts: list[str] = []
    if fixed_start or L is None:
        head = (
            f"{mode}: fixed start at {when}" if fixed_start else f"{mode}: no latest_finish, start at {when}"
        )
        parts.append(f"{head}, estimated {chosen.emissions_g:,.0f} gCO2e")
    else:
        parts.append(f"{mode}: {n_feas} of {total} starts finish by {need_name} before latest_finish")
        pct = chosen.saving_vs_earliest_pct
        if chosen.start == baseline.start:
            if flat:
                parts.append(f"every feasible start emits the same, so {when} (earliest_start) is kept")
            else:
                parts.append(f"starting at earliest_start ({when}) is the best trade-off")
        elif pct > 0.05:
            parts.append(f"{when} emits {pct:.0f}% less than starting at earliest_start")
        elif pct < -0.05:
            parts.append(
                f"{when} emits {-pct:.0f}% more than starting at earliest_start, for lower deadline risk "
                "or more slack"
            )
        else:
            parts.append(f"{when} emits about the same as starting at earliest_start")
        parts.append(f"deadline-miss risk {chosen.risk * 100:.0f}%")
    if capacity == "spot":
        parts.append(f"spot capacity (interruption probability {p_int * 100:.0f}% over the run)")
    else:
        parts.append("on-demand capacity")
    return "; ".join(parts + list(notes))
