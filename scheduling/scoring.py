"""Candidate scoring and the choice of a start time (README "How a start is chosen").

Model, for a window ``[E, L]`` and candidate starts ``s = E + k*step`` with ``s < L``:

- Runtime ``T`` is lognormal through ``p50`` and ``p90``: ``mu = ln p50``, ``sigma = ln(p90/p50)/1.2816``
  (``p90 == p50`` means a deterministic runtime).
- Emissions of a start (gCO2e) = ``power_kw`` (fleet kW, PUE included) x the integral of intensity (g/kWh)
  over ``[s, s + p50]``, computed for every start at once from prefix sums: O(n).
- The baseline ``b`` is the start "not moving" means: ``earliest`` (or the grid start nearest to
  ``baseline=``). Scores:
  ``carbon`` = ``(E_s - E_b) / E_b`` (0 at the baseline, -0.005 for a 0.5 % saving);
  ``risk`` = P(T > L - s), the deadline-miss probability (with spot capacity and interruption
  probability ``p``: ``(1 - p) P(T > L - s) + p P(1.5 T > L - s)``, an interruption half-way through
  followed by an on-demand rerun from scratch);
  ``slack`` = ``(L - (s + p90)) / (L - E)`` clipped to [0, 1] (1 = most buffer).
- Objective (minimised) = ``(w_c*carbon + w_r*risk + w_s*(1 - slack)) / (w_c + w_r + w_s)``;
  ties (within 1e-9) go to the earliest start.
- Uncertainty: the series' per-interval ``sigma`` (or ``Policy.default_rel_sigma`` x value) is a forecast
  error ``e(t) = sigma(t) z(t)``, ``z`` a unit Gaussian process with correlation
  ``a + (1 - a) exp(-|dt| / tau)`` (``Policy.corr_floor``, ``Policy.corr_hours``). With sigma averaged over
  each run, the saving against the baseline gets a closed-form 1-sigma (:func:`_diff_sigma`) and
  ``P(saving > 0)`` (normal).
- Skill gate (:class:`Policy`): a start other than the baseline is allowed only with an expected saving
  >= ``min_saving_pct``, ``P(saving > 0) >= min_saving_prob`` and at most ``max_risk_pts_per_saving_pct``
  points of added miss risk per 1 % of saving. The objective chooses among allowed starts.
- Paired rule (:mod:`scheduling.paired`): when the home region's series is history-based (``series.paired``,
  the embedded climatology) and ``Policy.use_paired``, the saving and probability thresholds are replaced,
  for every region whose series is history-based, by same-day paired savings over the history days nearest
  the plan date (mean, share of days saved, t; the zone's skill table may forbid shifting); the risk cap
  applies per 1 % of mean paired saving. Only pairs whose objective beats the baseline's are judged, best
  first, ``PAIRED_CHUNK`` at a time and at most ``PAIRED_MAX_CHUNKS`` chunks, stopping at the first chunk
  with an allowed pair. ``Plan.decision_rule`` says which rule applied, with its thresholds.

Risk modes (feasibility and capacity):

- ``CONSERVATIVE``: a start is feasible when its p90 finish is <= L. Always on-demand capacity.
- ``NEUTRAL``: feasible when its p50 finish is <= L. On-demand, unless spot is nearly free of risk and
  recoverable: ``spot_interruption_prob <= Policy.neutral_spot_max_prob`` (0.05) and the window is long
  enough for an on-demand rerun after a late interruption (``L - E >= p50 + p90``, or no deadline).
- ``AGGRESSIVE``: feasible when its p50 finish is <= L. Spot whenever it is offered with
  ``spot_interruption_prob <= Policy.aggressive_spot_max_prob`` (0.2), relying on the workflow to relaunch
  on-demand after an interruption while the window allows.
With spot, each candidate reports ``lost_run_g`` = p x 0.5 x its emissions (the expected lost partial run).

Spot is only considered when ``0 < spot_interruption_prob < 1``: the default 0.0 means "no spot
information" and 1.0 means "spot not offered" (``catalog.spot_interruption_probability`` never returns 0
for an offered type, since even the lowest Spot Advisor bin has a positive midpoint).

``latest=None`` (a ONE_TIME job with no deadline): one candidate at ``earliest``, risk 0, slack 1.
``fixed_start=True``: one candidate at ``earliest`` (still checked against ``latest`` when given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.special import ndtr

from models.domain import Capacity, RiskMode
from scheduling.carbon import CarbonSeries
from scheduling.paired import PairedHistory, PairedSkill, paired_figures
from scheduling.paired import allowed as paired_allowed

__all__ = [
    "AGGRESSIVE_SPOT_MAX_PROB",
    "MIN_SAVING_PCT",
    "MIN_SAVING_PROB",
    "NEUTRAL_SPOT_MAX_PROB",
    "UNGATED",
    "Candidate",
    "InfeasibleWindow",
    "Plan",
    "Policy",
    "RegionOption",
    "RiskMode",
    "Weights",
    "lognormal_sigma",
    "plan_regions",
    "plan_schedule",
    "doc_saving_text",
    "paired_text",
    "pct_text",
    "prob_exceeds",
    "saving_text",
]

Z90 = 1.2815515655446004  # standard normal 90th percentile
NEUTRAL_SPOT_MAX_PROB = 0.05  # default cap on the interruption probability NEUTRAL accepts for spot
AGGRESSIVE_SPOT_MAX_PROB = 0.20  # ... and AGGRESSIVE
LOST_RUN_FRACTION = 0.5  # expected share of a run done before an interruption (uniform interruption time)
MIN_SAVING_PCT = 3.0  # move off the baseline only for at least this expected saving ...
MIN_SAVING_PROB = 0.8  # ... when P(saving > 0) is at least this ...
MAX_RISK_PTS_PER_SAVING_PCT = 1.0  # ... and each point of added miss risk buys at least 1 % of saving
DEFAULT_REL_SIGMA = 0.10  # forecast error (1 sigma, share of the value) when a series carries no sigma
ERROR_CORR_FLOOR = 0.45  # forecast-error correlation: a + (1 - a) exp(-|dt| / tau), fitted on the ...
ERROR_CORR_HOURS = 8.0  # ... residuals of the embedded climatology (lag 1 h 0.96, 6 h 0.75, 24 h 0.5)
TIE_TOL = 1e-9  # objective differences below this are ties (float noise of prefix sums)
PAIRED_CHUNK = 96  # starts judged at a time by the paired rule, best objective first ...
PAIRED_MAX_CHUNKS = 4  # ... and at most this many chunks: if none of the 384 best passes, the baseline stays
_FEAS_TOL_SEC = 1e-6


@dataclass(frozen=True)
class Policy:
    """When the planner may leave the baseline, how it reads forecast uncertainty, and spot caps.

    ``min_saving_pct``: least expected saving (%) of a moved start; ``min_saving_prob``: least
    P(saving > 0); ``max_risk_pts_per_saving_pct``: most points of added deadline-miss risk per 1 % of
    expected saving; ``default_rel_sigma``: 1-sigma forecast error, as a share of the value, for a series
    without ``sigma``; ``corr_floor``/``corr_hours``: forecast errors at two times ``dt`` apart correlate
    by ``corr_floor + (1 - corr_floor) * exp(-|dt| / corr_hours)``; ``neutral_spot_max_prob`` /
    ``aggressive_spot_max_prob``: the highest interruption probability each mode accepts for spot;
    ``use_paired``: judge a history-based forecast (a series with ``paired``) by the paired rule
    (:mod:`scheduling.paired`) instead of the saving/probability thresholds (the risk cap applies to both).
    :data:`UNGATED` turns the gate off (pure objective, as a perfect-foresight oracle would plan).
    """

    min_saving_pct: float = MIN_SAVING_PCT
    min_saving_prob: float = MIN_SAVING_PROB
    max_risk_pts_per_saving_pct: float = MAX_RISK_PTS_PER_SAVING_PCT
    default_rel_sigma: float = DEFAULT_REL_SIGMA
    corr_floor: float = ERROR_CORR_FLOOR
    corr_hours: float = ERROR_CORR_HOURS
    neutral_spot_max_prob: float = NEUTRAL_SPOT_MAX_PROB
    aggressive_spot_max_prob: float = AGGRESSIVE_SPOT_MAX_PROB
    use_paired: bool = True

    def __post_init__(self) -> None:
        for name in ("min_saving_pct", "max_risk_pts_per_saving_pct", "default_rel_sigma"):
            v = getattr(self, name)
            if not v >= 0:  # also refuses NaN; max_risk_pts_per_saving_pct may be inf (no cap)
                raise ValueError(f"{name} must be >= 0, got {v}")
        if not (math.isfinite(self.corr_hours) and self.corr_hours > 0):
            raise ValueError(f"corr_hours must be a positive number, got {self.corr_hours}")
        for name in ("min_saving_prob", "corr_floor", "neutral_spot_max_prob", "aggressive_spot_max_prob"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {v}")


UNGATED = Policy(
    min_saving_pct=0.0,
    min_saving_prob=0.0,
    max_risk_pts_per_saving_pct=math.inf,
    neutral_spot_max_prob=NEUTRAL_SPOT_MAX_PROB,
    aggressive_spot_max_prob=AGGRESSIVE_SPOT_MAX_PROB,
    use_paired=False,
)


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
    """One start time and its scores. Times are UTC; ``emissions_g`` in gCO2e over the p50 runtime (the
    forecast's expectation); ``saving_vs_earliest_pct`` is the expected emissions saving against the
    baseline start (negative = more); ``saving_sigma_pct`` its 1-sigma uncertainty (percentage points of
    the baseline's emissions) and ``prob_saving`` = P(saving > 0); ``lost_run_g`` the expected gCO2e of a
    partial run lost to a spot interruption (0 on on-demand), not included in ``emissions_g``.
    Judged by the paired rule (a history-based forecast): ``paired_days`` comparable history days,
    ``paired_days_saved`` of them on which this start emitted less than the baseline start the same day, and
    ``paired_mean_saving_pct`` the mean of the daily savings (%); 0, 0 and None otherwise."""

    start: datetime
    finish_p50: datetime
    finish_p90: datetime
    carbon: float
    risk: float
    slack: float
    objective: float
    emissions_g: float
    saving_vs_earliest_pct: float
    saving_sigma_pct: float = 0.0
    prob_saving: float = 0.5
    lost_run_g: float = 0.0
    region: str | None = None
    paired_days: int = 0
    paired_days_saved: int = 0
    paired_mean_saving_pct: float | None = None

    @property
    def expected_savingpct_text(self) -> float:
        return self.saving_vs_earliest_pct

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposed_start": _iso(self.start),
            "estimated_finish_p50": _iso(self.finish_p50),
            "estimated_finish_p90": _iso(self.finish_p90),
            "scores": {"carbon": self.carbon, "risk": self.risk, "slack": self.slack},
            "objective": self.objective,
            "estimated_gco2e": self.emissions_g,
            "saving_vs_earliest_pct": self.saving_vs_earliest_pct,
            "expected_saving_pct": self.saving_vs_earliest_pct,
            "saving_sigma_pct": self.saving_sigma_pct,
            "prob_saving": self.prob_saving,
            "expected_lost_run_gco2e": self.lost_run_g,
            **({"region": self.region} if self.region is not None else {}),
            **(self.paired_dict() if self.paired_days else {}),
        }

    def paired_dict(self) -> dict[str, Any]:
        return {
            "paired_days": self.paired_days,
            "paired_days_saved": self.paired_days_saved,
            "paired_mean_saving_pct": self.paired_mean_saving_pct,
        }


@dataclass(frozen=True)
class Plan:
    """The chosen start, the top candidates (chosen first), the baseline (earliest feasible start) and why.

    ``skill_gated``: True when a start with a better objective existed but the skill gate (minimum expected
    saving, P(saving > 0), risk per saving) kept the baseline. Planned over several regions
    (:func:`plan_regions`): the baseline is the home region's; ``home_best`` the start the home region alone
    would get (None with one region, or when the home region may not be chosen); ``regions`` the regions
    that could be chosen. ``decision_rule``: which rule allowed moves and with which thresholds
    (``{"rule": "paired", ...}`` for a history-based forecast, ``{"rule": "forecast", ...}`` otherwise)."""

    chosen: Candidate
    candidates: list[Candidate]
    baseline: Candidate
    rationale: str
    capacity: Capacity
    feasible_count: int
    total_count: int
    risk_mode: RiskMode = RiskMode.CONSERVATIVE
    spot_interruption_prob: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    skill_gated: bool = False
    home_best: Candidate | None = None
    regions: tuple[str, ...] = ()
    decision_rule: dict[str, Any] = field(default_factory=dict)

    @property
    def region(self) -> str | None:
        """The chosen region (None when the plan was made without region labels)."""
        return self.chosen.region

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "baseline": self.baseline.to_dict(),
            "rationale": self.rationale,
            "capacity": str(self.capacity),
            "feasible_count": self.feasible_count,
            "total_count": self.total_count,
            "risk_mode": str(self.risk_mode),
            "skill_gated": self.skill_gated,
            "decision_rule": self.decision_rule,
        }


class InfeasibleWindow(ValueError):
    """No start in the window can meet the risk mode's deadline rule (the message names the numbers)."""


# --------------------------------------------------------------------------- math helpers


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
    out[pos] = ndtr(-z)  # the standard normal's upper tail
    return np.clip(out, 0.0, 1.0)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fmt_dur(sec: float) -> str:
    sec = float(sec)
    if sec < 120:
        return f"{sec:.3g} s"
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


def _capacity(
    mode: RiskMode, p_int: float, window_sec: float | None, p50: float, p90: float, policy: Policy
) -> Capacity:
    if mode is RiskMode.CONSERVATIVE or not 0.0 < p_int < 1.0:
        return Capacity.ON_DEMAND
    if mode is RiskMode.NEUTRAL:
        recoverable = window_sec is None or window_sec + _FEAS_TOL_SEC >= p50 + p90
        spot_ok = p_int <= policy.neutral_spot_max_prob and recoverable
        return Capacity.SPOT if spot_ok else Capacity.ON_DEMAND
    return Capacity.SPOT if p_int <= policy.aggressive_spot_max_prob else Capacity.ON_DEMAND


def _corr_F(x: np.ndarray, policy: Policy) -> np.ndarray:
    """``F(x)`` with ``F'' = k`` (the error correlation kernel), ``F(0) = F'(0) = 0``; x in seconds.

    ``integral over [a,b] x [c,d] of k(u - v)`` = ``F(b-c) + F(a-d) - F(a-c) - F(b-d)``.
    """
    a, tau = policy.corr_floor, policy.corr_hours * 3600.0
    x = np.abs(np.asarray(x, dtype=np.float64))
    return 0.5 * a * x * x + (1.0 - a) * tau * tau * (x / tau - 1.0 + np.exp(-x / tau))


def _diff_sigma(
    sig_s: np.ndarray, sig_0: float, offsets: np.ndarray, dur: float, policy: Policy
) -> np.ndarray:
    """1-sigma of ``integral over the run at offset d`` minus ``over the run at 0`` (g/kWh x s).

    Error model: ``e(t) = sigma(t) z(t)`` with ``z`` a unit Gaussian process of correlation ``k``; over one
    run sigma is replaced by its time-weighted mean (``sig_s``, ``sig_0``), so
    ``Var = sig_s^2 G(T) + sig_0^2 G(T) - 2 sig_s sig_0 C(d)``, ``G(T) = 2 F(T)`` and
    ``C(d) = F(T - d) + F(T + d) - 2 F(d)`` (the covariance kernel of two runs d apart).
    """
    G = 2.0 * float(_corr_F(np.array(dur), policy))
    C = _corr_F(dur - offsets, policy) + _corr_F(dur + offsets, policy) - 2.0 * _corr_F(offsets, policy)
    var = (sig_s * sig_s + sig_0 * sig_0) * G - 2.0 * sig_s * sig_0 * C
    return np.sqrt(np.maximum(var, 0.0))


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    return np.asarray(ndtr(np.asarray(z, dtype=np.float64)), dtype=np.float64)


@dataclass(frozen=True)
class RegionOption:
    """One region a job may run in, for :func:`plan_regions`: ``series`` its intensity forecast (g/kWh, with
    an optional ``sigma``), ``power_kw`` the fleet's power there (kW, PUE included),
    ``spot_interruption_prob`` as for :func:`plan_schedule`, and ``selectable``: False for a region that
    may not be chosen (the instance type is not offered there, or the job may not run there) but still
    serves as the savings baseline when it is the home region."""

    region: str | None
    series: CarbonSeries
    power_kw: float
    spot_interruption_prob: float = 0.0
    selectable: bool = True


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
    policy: Policy | None = None,
    baseline: datetime | None = None,
    region: str | None = None,
) -> Plan:
    """Choose the start in ``[earliest, latest)`` that minimises the weighted objective among the starts
    the skill gate allows (see module doc).

    Units: times tz-aware UTC; ``p50_sec``/``p90_sec`` runtime quantiles in seconds; ``series`` intensity in
    g/kWh covering ``[earliest, latest]`` (or ``[earliest, earliest + p90]`` without a deadline), with an
    optional per-interval ``sigma``; ``power_kw`` fleet power in kW including PUE;
    ``spot_interruption_prob`` the probability that a spot fleet is interrupted during the run (1.0 = spot
    not offered); ``step`` the candidate grid; ``policy`` the skill gate, uncertainty model and spot caps
    (default :class:`Policy`; :data:`UNGATED` for the pure objective); ``baseline`` the start that
    "not moving" means (default ``earliest``; e.g. a nominal time inside a +-H window): carbon scores,
    savings and the gate are relative to the feasible grid start nearest to it; ``region`` a label
    carried by every candidate (None: no label).
    Raises :class:`InfeasibleWindow` when no start meets the mode's deadline rule, ValueError on bad input.
    """
    return plan_regions(
        earliest=earliest,
        latest=latest,
        p50_sec=p50_sec,
        p90_sec=p90_sec,
        options=[RegionOption(region, series, power_kw, spot_interruption_prob)],
        risk_mode=risk_mode,
        weights=weights,
        step=step,
        top_k=top_k,
        fixed_start=fixed_start,
        notes=notes,
        policy=policy,
        baseline=baseline,
    )


def plan_regions(
    *,
    earliest: datetime,
    latest: datetime | None,
    p50_sec: float,
    p90_sec: float,
    options: Sequence[RegionOption],
    risk_mode: RiskMode,
    weights: Weights,
    step: timedelta = timedelta(minutes=15),
    top_k: int = 5,
    fixed_start: bool = False,
    notes: list[str] | None = None,
    policy: Policy | None = None,
    baseline: datetime | None = None,
) -> Plan:
    """Choose the (region, start) pair that minimises the weighted objective among the pairs the skill gate
    allows: :func:`plan_schedule` over several regions at once (README "Choosing the region").

    ``options[0]`` is the home region: the baseline (savings, carbon scores, the gate) is the home region at
    the baseline start, whether or not the home region is selectable. Every region is scored on the same
    start grid, vectorised (regions x starts arrays); forecast errors of different regions are taken as
    independent. Ties go to the home region, then to earlier regions in ``options``, then to the earliest
    start. Regions with ``selectable=False`` are never chosen nor listed; when none is selectable the home
    region is planned as :func:`plan_schedule` would (the caller explains why in ``notes``).
    With one option this is exactly :func:`plan_schedule`.
    """
    mode = RiskMode(risk_mode)
    pol = Policy() if policy is None else policy
    if not isinstance(pol, Policy):
        raise ValueError("policy must be a Policy instance")
    if not isinstance(weights, Weights):
        raise ValueError("weights must be a Weights instance")
    if not options:
        raise ValueError("options must name at least one region")
    E = _as_utc(earliest, "earliest")
    L = None if latest is None else _as_utc(latest, "latest")
    p50, p90 = float(p50_sec), float(p90_sec)
    if not (math.isfinite(p50) and p50 > 0):
        raise ValueError(f"p50_sec must be a positive number of seconds, got {p50_sec}")
    if not (math.isfinite(p90) and p90 >= p50):
        raise ValueError(f"p90_sec must be >= p50_sec ({p50:g} s), got {p90_sec}")
    for o in options:
        if not (math.isfinite(o.power_kw) and o.power_kw >= 0):
            raise ValueError(f"power_kw must be >= 0, got {o.power_kw}")
        if not 0.0 <= float(o.spot_interruption_prob) <= 1.0:
            raise ValueError(f"spot_interruption_prob must be in [0, 1], got {o.spot_interruption_prob}")
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
    for o in options:
        if not o.series.covers(E, horizon_end):
            label = f"{o.region} " if o.region else ""
            raise ValueError(
                f"{label}carbon series [{_iso(o.series.start)}, {_iso(o.series.end)}) does not cover "
                f"[{_iso(E)}, {_iso(horizon_end)}]"
            )

    # Candidate starts as offsets (s) from E; feasible ones are a prefix since finish grows with s.
    if fixed_start or window is None:
        total = n_feas = 1
    else:
        total = max(1, math.ceil(window / step_sec - 1e-9))
        n_feas = min(total, int((window - need + _FEAS_TOL_SEC) // step_sec) + 1)
    s = np.arange(n_feas, dtype=np.float64) * step_sec
    R = len(options)

    # Integrals over [s, s + p50] of intensity (g/kWh x s) and of its sigma, for every region and start:
    # (R, n_feas) arrays; regions whose series share a grid are computed in one vectorised pass.
    subs = [o.series.slice(E, horizon_end) for o in options]
    integ = np.empty((R, n_feas))
    sig_run = np.empty((R, n_feas))
    for rows in _same_grid_groups(subs):
        sub = subs[rows[0]]
        off = (E - sub.start).total_seconds()
        dt = sub.step_sec
        n_sub = len(sub)
        t = np.clip(np.concatenate([off + s + p50, off + s]), 0.0, n_sub * dt)
        idx = np.minimum((t // dt).astype(np.int64), n_sub - 1)
        frac = t - idx * dt

        def run_integrals(arr: np.ndarray) -> np.ndarray:
            pre = np.empty((arr.shape[0], n_sub + 1))  # noqa: B023 - used within this iteration only
            pre[:, 0] = 0.0
            np.cumsum(arr, axis=1, out=pre[:, 1:])
            pre[:, 1:] *= dt  # noqa: B023
            c = pre[:, idx] + frac * arr[:, idx]  # noqa: B023
            return c[:, :n_feas] - c[:, n_feas:]

        integ[rows] = run_integrals(np.stack([subs[r].values for r in rows]))
        with_sigma = [r for r in rows if subs[r].sigma is not None]
        if with_sigma:  # time-weighted mean sigma over each run
            sig_run[with_sigma] = (
                run_integrals(np.stack([np.asarray(subs[r].sigma) for r in with_sigma])) / p50
            )
        for r in rows:
            if subs[r].sigma is None:
                sig_run[r] = integ[r] * (pol.default_rel_sigma / p50)

    power = np.array([float(o.power_kw) for o in options])
    emissions = integ * (power[:, None] / 3600.0)  # gCO2e
    # carbon is compared in the home region's power units: region r's run costs integ x power_r / power_0
    q = power / power[0] if power[0] > 0 else np.ones(R)
    q[0] = 1.0
    eff = integ * q[:, None]

    b = 0  # index of the baseline start (in the home region)
    if baseline is not None and n_feas > 1:
        b_off = (_as_utc(baseline, "baseline") - E).total_seconds()
        b = int(min(max(round(b_off / step_sec), 0), n_feas - 1))

    # Forecast uncertainty of each pair's saving against the baseline (home, b): correlated errors within
    # the home region, independent errors between regions.
    sig_b = float(sig_run[0, b])
    d_sigma = np.empty((R, n_feas))
    d_sigma[0] = _diff_sigma(sig_run[0], sig_b, np.abs(s - s[b]), p50, pol)  # g/kWh x s
    if R > 1:
        G = 2.0 * float(_corr_F(np.array(p50), pol))
        other = sig_run[1:] * q[1:, None]
        d_sigma[1:] = np.sqrt((other * other + sig_b * sig_b) * G)
    base_i = float(integ[0, b])
    if base_i > 0:
        carbon = (eff - base_i) / base_i  # 0 at the baseline, -0.005 for a 0.5 % saving
        saving_pct = -carbon * 100.0
        sigma_pct = d_sigma / base_i * 100.0
    else:
        carbon = np.zeros((R, n_feas))
        saving_pct = np.zeros((R, n_feas))
        sigma_pct = np.zeros((R, n_feas))
    gain = base_i - eff
    with np.errstate(divide="ignore", invalid="ignore"):
        p_pos = np.where(d_sigma > 0, _norm_cdf(gain / np.where(d_sigma > 0, d_sigma, 1.0)), 0.5)
    tol = 1e-9 * max(abs(base_i), 1e-12)
    p_pos = np.where(d_sigma > 0, p_pos, np.where(gain > tol, 1.0, np.where(gain < -tol, 0.0, 0.5)))
    p_pos[0, b] = 0.5

    p_ints = [float(o.spot_interruption_prob) for o in options]
    capacities = [_capacity(mode, p, window, p50, p90, pol) for p in p_ints]
    lost_g = np.zeros((R, n_feas))
    if window is None:
        risk = np.zeros((R, n_feas))
        slack = np.ones(n_feas)
    else:
        plain = prob_exceeds(window - s, p50, p90)
        risk = np.tile(plain, (R, 1))
        if any(c == Capacity.SPOT for c in capacities):
            # an interruption after a share f of the run loses that share, then an on-demand rerun of the
            # whole job follows: the run needs (1 + f) x runtime, f = LOST_RUN_FRACTION in expectation
            rerun = prob_exceeds((window - s) / (1.0 + LOST_RUN_FRACTION), p50, p90)
            for r, cap in enumerate(capacities):
                if cap == Capacity.SPOT:
                    risk[r] = (1.0 - p_ints[r]) * plain + p_ints[r] * rerun
        slack = np.clip((window - s - p90) / window, 0.0, 1.0)
    for r, cap in enumerate(capacities):
        if cap == Capacity.SPOT:
            lost_g[r] = p_ints[r] * LOST_RUN_FRACTION * emissions[r]

    wt = weights.total
    objective = (weights.carbon * carbon + weights.risk * risk + weights.slack * (1.0 - slack)) / wt

    selectable = np.array([bool(o.selectable) for o in options])
    if not selectable.any():
        selectable[0] = True  # nothing may be chosen: plan the home region as if it were the only one
    usable = np.repeat(selectable[:, None], n_feas, axis=1)
    em_use = emissions[usable]
    emin, emax = float(em_use.min()), float(em_use.max())
    flat = emax - emin <= 1e-9 * max(abs(emax), 1e-12)

    # The skill gate: leave the baseline only for a likely, large enough saving worth its added risk.
    added_risk_pts = (risk - risk[0, b]) * 100.0
    eligible = (saving_pct >= pol.min_saving_pct - 1e-9) & (p_pos >= pol.min_saving_prob)
    rule: dict[str, Any] = {
        "rule": "forecast",
        "min_saving_pct": pol.min_saving_pct,
        "min_saving_prob": pol.min_saving_prob,
    }
    risk_cap = pol.max_risk_pts_per_saving_pct
    if math.isfinite(risk_cap):
        eligible &= added_risk_pts <= risk_cap * np.maximum(saving_pct, 0.0) + 1e-9
    rule["max_risk_pts_per_saving_pct"] = risk_cap if math.isfinite(risk_cap) else None
    paired = _paired_context(options, E, s, p50, b, pol) if n_feas > 1 else None
    p_mean = np.zeros((R, n_feas))
    p_saved = np.zeros((R, n_feas), dtype=np.int64)
    p_done = np.zeros((R, n_feas), dtype=bool)
    p_n = 0
    if paired is not None:  # history-based forecast: same-day paired savings decide instead
        hists, days, ref, base_b, sk = paired
        assert hists[0] is not None
        summary = {**sk.summary(), "paired_days": int(days.size), "history": hists[0].year_label}
        rule = {**summary, "max_risk_pts_per_saving_pct": rule["max_risk_pts_per_saving_pct"]}
        p_n = int(days.size)
        in_rule = np.array([h is not None for h in hists])
        eligible[in_rule] = False
        p_done[0, b] = True  # the baseline against itself: 0 of the days, mean 0
        # Judge the pairs that could beat the baseline, best objective first, a chunk at a time: the choice
        # is the first allowed one, so the rest need no figures (they show none).
        obj_flat = objective.ravel()
        could = usable & in_rule[:, None] & (objective < objective[0, b] - TIE_TOL)
        todo = np.flatnonzero(could.ravel())
        todo = todo[np.lexsort((todo, obj_flat[todo]))]
        if not sk.allowed:  # the home region may not shift: judge one chunk of it, for the rationale
            todo = np.concatenate([todo[:PAIRED_CHUNK], todo[PAIRED_CHUNK:][todo[PAIRED_CHUNK:] >= n_feas]])
        todo = todo[: PAIRED_CHUNK * PAIRED_MAX_CHUNKS]
        for c0 in range(0, todo.size, PAIRED_CHUNK):
            chunk = todo[c0 : c0 + PAIRED_CHUNK]
            r_of, i_of = np.divmod(chunk, n_feas)
            for r in np.unique(r_of):
                cols = i_of[r_of == r]
                hist = hists[int(r)]
                assert hist is not None
                integ = hist.integrals(E, s[cols], p50, days, ref) * q[r]
                mean, saved, t = paired_figures(base_b, integ)
                ok = paired_allowed(mean, saved, t, p_n, sk) & (bool(sk.allowed) or int(r) != 0)
                if math.isfinite(risk_cap):
                    ok &= added_risk_pts[r, cols] <= risk_cap * np.maximum(mean, 0.0) + 1e-9
                p_mean[r, cols], p_saved[r, cols], p_done[r, cols] = mean, saved, True
                eligible[r, cols] = ok
            if eligible.ravel()[chunk].any():
                break
    eligible[0, b] = True
    eligible &= usable
    if not eligible.any():  # the home region may not be chosen and nothing passes the gate
        eligible = usable.copy()
    flat_obj = np.where(usable, objective, np.inf).ravel()  # region-major: ties go to the home region
    best_all_i = int(np.argmax(flat_obj <= float(flat_obj.min()) + TIE_TOL))
    gated_obj = np.where(eligible, objective, np.inf).ravel()
    chosen_i = int(np.argmax(gated_obj <= float(gated_obj.min()) + TIE_TOL))  # first within the tolerance
    skill_gated = bool(chosen_i != best_all_i and flat_obj[best_all_i] < flat_obj[chosen_i] - TIE_TOL)
    rank = np.where(eligible, objective, objective + 10.0).ravel()  # gated-out pairs after allowed ones
    pool = np.flatnonzero(usable.ravel())
    k = min(top_k, pool.size)
    part = pool[np.argpartition(rank[pool], k - 1)[:k]] if pool.size > k else pool
    part = part[np.lexsort((part, rank[part]))]
    order = [chosen_i] + [int(i) for i in part if i != chosen_i][: k - 1]

    d50, d90 = timedelta(seconds=p50), timedelta(seconds=p90)

    def cand(flat_i: int) -> Candidate:
        r, i = divmod(flat_i, n_feas)
        st = E + step * i
        return Candidate(
            start=st,
            finish_p50=st + d50,
            finish_p90=st + d90,
            carbon=float(carbon[r, i]),
            risk=float(risk[r, i]),
            slack=float(slack[i]),
            objective=float(objective[r, i]),
            emissions_g=float(emissions[r, i]),
            saving_vs_earliest_pct=float(saving_pct[r, i]),
            saving_sigma_pct=float(sigma_pct[r, i]),
            prob_saving=float(p_pos[r, i]),
            lost_run_g=float(lost_g[r, i]),
            region=options[r].region,
            paired_days=p_n if p_done[r, i] else 0,
            paired_days_saved=int(p_saved[r, i]),
            paired_mean_saving_pct=float(p_mean[r, i]) if p_done[r, i] else None,
        )

    candidates = [cand(i) for i in order]
    chosen = candidates[0]
    chosen_r = chosen_i // n_feas
    base_c = chosen if chosen_i == b else cand(b)
    home_best = None
    if R > 1 and selectable[0]:  # the plan the home region alone would get, for the rationale
        home_gated = np.where(eligible[0], objective[0], np.inf)
        home_i = int(np.argmax(home_gated <= float(home_gated.min()) + TIE_TOL))
        home_best = chosen if home_i == chosen_i else cand(home_i)
    rationale = _rationale(
        mode,
        E,
        L,
        chosen,
        base_c,
        n_feas,
        total,
        need_name,
        capacities[chosen_r],
        p_ints[chosen_r],
        fixed_start,
        flat=flat,
        notes=_region_notes(options, chosen, base_c, home_best, int(selectable.sum())) + (notes or []),
        gated_best=cand(best_all_i) if skill_gated else None,
        policy=pol,
        p50=p50,
        rule=rule,
    )
    return Plan(
        chosen=chosen,
        candidates=candidates,
        baseline=base_c,
        rationale=rationale,
        capacity=capacities[chosen_r],
        feasible_count=n_feas,
        total_count=total,
        risk_mode=mode,
        spot_interruption_prob=p_ints[chosen_r],
        notes=tuple(notes or ()),
        skill_gated=skill_gated,
        home_best=home_best,
        regions=tuple(o.region for o, ok in zip(options, selectable, strict=True) if ok and o.region),
        decision_rule=rule,
    )


def _paired_context(
    options: Sequence[RegionOption], E: datetime, s: np.ndarray, p50: float, b: int, pol: Policy
) -> tuple[list[PairedHistory | None], np.ndarray, datetime, np.ndarray, PairedSkill] | None:
    """What the paired rule (:mod:`scheduling.paired`) needs when the home region's forecast is
    history-based: each region's history (None: that region's forecast gate decides), the paired days, the
    reference time, the baseline's integral on each day and the home zone's rule at the plan's month.
    None = not applicable."""
    home = options[0].series.paired
    if not pol.use_paired or home is None:
        return None
    ref = E + timedelta(seconds=float(s[b]))
    try:
        days = home.paired_days(ref, E, float(s[-1]) + p50)
        base_b = home.integrals(E, s[b : b + 1], p50, days, ref)[:, 0]
        home.integrals(E, s[-1:], p50, days, ref)  # the whole window fits the history's wrap
    except ValueError:
        return None  # a window longer than the history's wrap: the forecast gate decides
    return [o.series.paired for o in options], days, ref, base_b, home.skill.at(ref)


def _same_grid_groups(subs: Sequence[CarbonSeries]) -> list[list[int]]:
    """Indices of the series grouped by identical grids (start, step, length), first-seen order."""
    groups: dict[tuple[datetime, float, int], list[int]] = {}
    for i, sub in enumerate(subs):
        groups.setdefault((sub.start, sub.step_sec, len(sub)), []).append(i)
    return list(groups.values())


def _saving_words(pct: float) -> str:
    return "no saving" if abs(pct) < 0.5 else f"{pct:.0f}% saving" if pct > 0 else f"{-pct:.0f}% more"


def _region_notes(
    options: Sequence[RegionOption],
    chosen: Candidate,
    baseline: Candidate,
    home_best: Candidate | None,
    n_selectable: int,
) -> list[str]:
    """What the region choice adds to the rationale (nothing with one region)."""
    if len(options) == 1:
        return []
    home = options[0].region
    ref = baseline.start
    if chosen.region == home:
        return [f"{home} (home) is the best of {n_selectable} allowed regions"]
    out = [
        f"{chosen.region} chosen among {n_selectable} allowed regions: {chosen.emissions_g:,.0f} gCO2e "
        f"against {baseline.emissions_g:,.0f} at the baseline in {home}"
    ]
    if home_best is not None:
        out.append(
            f"the best start in {home} alone, {_fmt_time(home_best.start, ref)}, would emit "
            f"{home_best.emissions_g:,.0f} gCO2e ({_saving_words(home_best.saving_vs_earliest_pct)})"
        )
    else:
        out.append(f"{home} itself may not be chosen for this job")
    return out


def pct_text(x: float, nd: int = 0) -> str:
    """``x`` as a percentage with ``nd`` decimals, never "-0%"."""
    v = round(float(x), nd)
    return f"{0.0 if v == 0 else v:.{nd}f}%"


def saving_text(pct: float, sigma: float, nd: int = 0) -> str:
    """ "12% +- 5%"; an uncertainty wider than the saving says so: "2% (uncertain: +- 5%)"."""
    if round(abs(sigma), nd) > round(abs(pct), nd):
        return f"{pct_text(pct, nd)} (uncertain: +- {pct_text(sigma, nd)})"
    return f"{pct_text(pct, nd)} +- {pct_text(sigma, nd)}"


def paired_text(c: Candidate, rule: dict[str, Any]) -> str:
    """ "saved on 26 of 29 comparable days of the 2023 history, mean 6.1%"."""
    hist = rule.get("history")
    of = f" of the {hist} history" if hist else ""
    return (
        f"saved on {c.paired_days_saved} of {c.paired_days} comparable days{of}, "
        f"mean {pct_text(c.paired_mean_saving_pct or 0.0, 1)}"
    )


def doc_saving_text(doc: dict[str, Any]) -> str:
    """The saving of a candidate document (the API's candidate / a run's plan) in words: the paired figures
    when it has them, else the forecast's saving with its uncertainty (:func:`saving_text`)."""
    if doc.get("paired_days"):
        return (
            f"saved on {doc.get('paired_days_saved', 0)} of {doc['paired_days']} comparable days, "
            f"mean {pct_text(doc.get('paired_mean_saving_pct') or 0.0, 1)}"
        )
    pct = doc.get("expected_saving_pct", doc.get("saving_vs_earliest_pct")) or 0.0
    sigma = doc.get("saving_sigma_pct")
    return (
        f"expected saving {pct_text(pct, 1)}"
        if sigma is None
        else f"expected saving {saving_text(pct, sigma, 1)}"
    )


def _why_paired(c: Candidate, base: Candidate, rule: dict[str, Any], pol: Policy) -> str:
    reasons = []
    n = max(c.paired_days, 1)
    share = float(rule.get("min_share_saved", 0.0))
    mean = float(rule.get("min_mean_saving_pct", 0.0))
    if c.paired_days_saved < share * n - 1e-9:
        reasons.append(f"the rule needs {share * 100:.0f}% of days")
    if (c.paired_mean_saving_pct or 0.0) < mean - 1e-9:
        reasons.append(f"a mean saving of at least {mean:g}%")
    min_t = float(rule.get("min_t", 0.0))
    if min_t > 0 and reasons == [] and c.paired_days:
        reasons.append(f"a mean at least {min_t:g} standard errors above zero (the days disagree too much)")
    added = (c.risk - base.risk) * 100
    if added > pol.max_risk_pts_per_saving_pct * max(c.paired_mean_saving_pct or 0.0, 0.0) + 1e-9:
        reasons.append(f"it adds {added:.1f} points of deadline-miss risk")
    if not reasons and c.paired_days == 0:
        reasons.append("no comparable history day")
    return ", ".join(reasons) or "not allowed by the paired rule"


def _why_gated(c: Candidate, base: Candidate, pol: Policy) -> str:
    reasons = []
    if c.saving_vs_earliest_pct < pol.min_saving_pct:
        reasons.append(f"below the {pol.min_saving_pct:g}% minimum saving")
    if c.prob_saving < pol.min_saving_prob:
        reasons.append(
            f"P(saving > 0) {c.prob_saving * 100:.0f}% < {pol.min_saving_prob * 100:.0f}%: "
            "the forecast's uncertainty swamps the difference"
        )
    added = (c.risk - base.risk) * 100
    if added > pol.max_risk_pts_per_saving_pct * max(c.saving_vs_earliest_pct, 0.0) + 1e-9:
        reasons.append(f"it adds {added:.1f} points of deadline-miss risk")
    return ", ".join(reasons) or "not allowed by the skill gate"


def _rationale(
    mode: RiskMode,
    E: datetime,
    L: datetime | None,
    chosen: Candidate,
    baseline: Candidate,
    n_feas: int,
    total: int,
    need_name: str,
    capacity: Capacity,
    p_int: float,
    fixed_start: bool,
    flat: bool,
    notes: list[str],
    gated_best: Candidate | None = None,
    policy: Policy | None = None,
    p50: float = 0.0,
    rule: dict[str, Any] | None = None,
) -> str:
    pol = policy or Policy()
    rule = rule or {}
    when = _fmt_time(chosen.start, E)
    parts: list[str] = []
    if fixed_start or L is None:
        where = f" in {chosen.region}" if chosen.region != baseline.region else ""
        head = (
            f"{mode}: fixed start at {when}{where}"
            if fixed_start
            else f"{mode}: no latest_finish, start at {when}{where}"
        )
        est = f"estimated {chosen.emissions_g:,.0f} gCO2e"
        if where:
            est += (
                f" against {baseline.emissions_g:,.0f} in {baseline.region} (home), "
                f"{chosen.saving_vs_earliest_pct:.0f}% less"
            )
        parts.append(f"{head}, {est}")
    else:
        parts.append(f"{mode}: {n_feas} of {total} starts finish by {need_name} before latest_finish")
        pct, sig = chosen.saving_vs_earliest_pct, chosen.saving_sigma_pct
        base_name = "earliest_start" if baseline.start == E else "the baseline start"
        against = "earliest_start" if baseline.start == E else f"the baseline {_fmt_time(baseline.start, E)}"
        moved_region = chosen.region != baseline.region
        if moved_region:
            when = f"{when} in {chosen.region}"
            against = f"{against} in {baseline.region} (home)"
        if chosen.start == baseline.start and not moved_region:
            if flat:
                parts.append(f"every feasible start emits the same, so {when} ({base_name}) is kept")
            elif gated_best is not None and gated_best.paired_days and rule.get("allowed") is False:
                parts.append(
                    f"{when} ({base_name}) is kept: history-based shifting is off for zone "
                    f"{rule.get('zone')}: {rule.get('reason') or 'no skill out of sample'} "
                    f"(the best alternative, {_fmt_time(gated_best.start, E)}, "
                    f"{paired_text(gated_best, rule)})"
                )
            elif gated_best is not None and gated_best.paired_days:
                parts.append(
                    f"{when} ({base_name}) is kept: the best alternative, {_fmt_time(gated_best.start, E)}, "
                    f"{paired_text(gated_best, rule)}; {_why_paired(gated_best, baseline, rule, pol)}"
                )
            elif gated_best is not None:
                parts.append(
                    f"{when} ({base_name}) is kept: the best alternative, "
                    f"{_fmt_time(gated_best.start, E)}, would save "
                    f"{saving_text(gated_best.saving_vs_earliest_pct, gated_best.saving_sigma_pct, 1)}, "
                    f"{_why_gated(gated_best, baseline, pol)}"
                )
            else:
                parts.append(f"starting at {base_name} ({when}) is the best trade-off")
        elif chosen.paired_days:
            parts.append(
                f"{when}: {paired_text(chosen, rule)}, against starting at {against} "
                f"(forecast: {pct_text(pct)} less)"
            )
        else:
            parts.append(
                f"{when}: expected saving {saving_text(pct, sig)} against starting at {against} "
                f"(P(saving > 0) {chosen.prob_saving * 100:.0f}%)"
            )
        parts.append(f"deadline-miss risk {chosen.risk * 100:.0f}%")
    if capacity == Capacity.SPOT:
        parts.append(
            f"spot capacity (interruption probability {p_int * 100:.0f}% over the run; a lost partial run "
            f"is counted: expected +{chosen.lost_run_g:,.0f} gCO2e and "
            f"+{_fmt_dur(p_int * LOST_RUN_FRACTION * p50)} of rerun time)"
        )
    else:
        parts.append("on-demand capacity")
    return "; ".join(parts + list(notes))
