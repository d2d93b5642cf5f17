"""Measured skill of a live forecast by lead time, and the sigma the planner uses from it (issue 18).

Pure numpy. The product pairs the forecast each plan used (values at decision time) with the intensity
measured later (``services/skill.py``), one pair per hour: lead time ``h`` (hours from the forecast's issue
time to the middle of the hour), forecast ``f``, measured ``a``, and the 1-sigma the product stated ``s``.
Per lead-time bucket (:data:`LEAD_EDGES_H`) :func:`lead_skill` reports:

- ``bias`` = mean(a - f) and ``mae`` = mean |a - f| (g/kWh), ``bias_pct`` = mean((a - f) / f) x 100;
- ``measured_sigma_pct`` = sqrt(mean(((a - f) / f)^2)) x 100, the relative RMS error (bias included, so an
  interval built from it covers a biased forecast too);
- ``coverage_80``: the share of pairs inside the *stated* 80 % interval ``f +- 1.2816 s``;
- ``sigma_pct``, the relative sigma the planner uses at those lead times: the prior (the provider's
  documented ``relative_sigma``) below :data:`MIN_PAIRS` pairs; from there on the pairs' mean square
  error shrunk towards the prior's with the weight of :data:`PRIOR_PAIRS` pairs:
  ``sqrt((k p^2 + n m) / (k + n))``, ``p`` the prior at the pairs' lead times (rms), ``m`` the mean squared
  relative error.

:func:`apply_lead_sigma` puts that sigma on the live part of a series (``0 < lead`` and before the live data
end); measured points (sigma 0) and the spliced continuation keep theirs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from scheduling.carbon import CarbonSeries

__all__ = [
    "LEAD_EDGES_H",
    "MIN_PAIRS",
    "PRIOR_PAIRS",
    "Z80",
    "LeadSkill",
    "apply_lead_sigma",
    "lead_skill",
    "rel_sigma_at",
]

LEAD_EDGES_H = (0.0, 3.0, 6.0, 12.0, 24.0, 48.0, math.inf)  # lead-time buckets (hours)
MIN_PAIRS = 30  # below this many pairs in a bucket the prior is used as it is
PRIOR_PAIRS = 10.0  # the prior weighs as much as this many pairs in the blend
Z80 = 1.2815515655446004  # half-width of a central 80 % normal interval, in sigmas


@dataclass(frozen=True)
class LeadSkill:
    """Skill of one (provider, zone) forecast in the lead-time bucket ``[lead_from_h, lead_to_h)`` (hours;
    ``lead_to_h`` None = open). g/kWh for ``bias``/``mae``; percentages of the forecast value otherwise.
    ``is_prior``: ``sigma_pct`` is the prior alone (too few pairs)."""

    lead_from_h: float
    lead_to_h: float | None
    pairs: int
    bias: float | None
    bias_pct: float | None
    mae: float | None
    measured_sigma_pct: float | None
    coverage_80: float | None
    prior_sigma_pct: float
    sigma_pct: float
    is_prior: bool


def _prior_at(prior: Callable[[np.ndarray], np.ndarray], lead_h: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(prior(lead_h), dtype=np.float64), lead_h.shape)


def lead_skill(
    lead_h: Sequence[float] | np.ndarray,
    forecast: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    stated_sigma: Sequence[float] | np.ndarray,
    prior: Callable[[np.ndarray], np.ndarray],
    edges: Sequence[float] = LEAD_EDGES_H,
    min_pairs: int = MIN_PAIRS,
    prior_pairs: float = PRIOR_PAIRS,
) -> list[LeadSkill]:
    """Skill per lead-time bucket from forecast/measured pairs (see the module doc). ``prior(lead_h)``: the
    documented relative 1-sigma (share of the value) at those lead times. Pairs with a non-positive
    forecast or a negative lead are ignored. Every bucket is reported, also without pairs."""
    h = np.asarray(lead_h, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    s = np.asarray(stated_sigma, dtype=np.float64)
    if not (h.shape == f.shape == a.shape == s.shape) or h.ndim != 1:
        raise ValueError("lead_h, forecast, actual and stated_sigma must be 1-D arrays of one length")
    ok = np.isfinite(h) & np.isfinite(f) & np.isfinite(a) & np.isfinite(s) & (f > 0) & (h >= 0)
    h, f, a, s = h[ok], f[ok], a[ok], s[ok]
    out: list[LeadSkill] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (h >= lo) & (h < hi)
        n = int(m.sum())
        mid = lo + 1.0 if not math.isfinite(hi) else (lo + hi) / 2.0
        if n == 0:
            p = float(_prior_at(prior, np.array([mid]))[0])
            out.append(
                LeadSkill(lo, None if not math.isfinite(hi) else hi, 0, None, None, None, None, None,
                          100 * p, 100 * p, True)
            )  # fmt: skip
            continue
        err = a[m] - f[m]
        rel = err / f[m]
        p_lead = _prior_at(prior, h[m])
        p_rms = float(np.sqrt(np.mean(p_lead * p_lead)))
        msq = float(np.mean(rel * rel))
        is_prior = n < min_pairs
        sigma = p_rms if is_prior else math.sqrt((prior_pairs * p_rms**2 + n * msq) / (prior_pairs + n))
        out.append(
            LeadSkill(
                lead_from_h=lo,
                lead_to_h=None if not math.isfinite(hi) else hi,
                pairs=n,
                bias=float(err.mean()),
                bias_pct=100.0 * float(rel.mean()),
                mae=float(np.abs(err).mean()),
                measured_sigma_pct=100.0 * math.sqrt(msq),
                coverage_80=float(np.mean(np.abs(err) <= Z80 * s[m] + 1e-12)),
                prior_sigma_pct=100.0 * p_rms,
                sigma_pct=100.0 * sigma,
                is_prior=is_prior,
            )
        )
    return out


def rel_sigma_at(
    lead_h: np.ndarray, skills: Sequence[LeadSkill], prior: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Relative 1-sigma (share of the value) at each lead time: the bucket's measured ``sigma_pct`` where
    it has enough pairs, else the prior at that very lead time (so the prior keeps its own lead growth)."""
    h = np.asarray(lead_h, dtype=np.float64)
    out = _prior_at(prior, h).copy()
    for sk in skills:
        if sk.is_prior:
            continue
        hi = math.inf if sk.lead_to_h is None else sk.lead_to_h
        out[(h >= sk.lead_from_h) & (h < hi)] = sk.sigma_pct / 100.0
    return out


def apply_lead_sigma(
    series: CarbonSeries,
    issued_at: datetime,
    live_until: datetime,
    skills: Sequence[LeadSkill],
    prior: Callable[[np.ndarray], np.ndarray],
) -> CarbonSeries:
    """``series`` with the measured sigma (:func:`rel_sigma_at` x value) on its live forecast points: the
    intervals whose middle lies after ``issued_at`` and that end by ``live_until``. Other points (measured
    values, the spliced continuation) keep their sigma. Unchanged when every bucket is the prior."""
    if all(sk.is_prior for sk in skills) or series.sigma is None:
        return series
    step = series.step
    mids = np.array([(t + step / 2 - issued_at) / timedelta(hours=1) for t in series.times()])
    ends = np.array([t + step <= live_until for t in series.times()])
    live = (mids > 0) & ends
    if not live.any():
        return series
    sigma = np.array(series.sigma, dtype=np.float64)
    sigma[live] = series.values[live] * rel_sigma_at(mids[live], skills, prior)
    return series.with_sigma(sigma)
