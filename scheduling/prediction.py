"""Runtime prediction from a job's finished runs: recency-weighted, in log space, with a calibrated p90.

Model: log-durations ``y_i = ln d_i`` are treated as normal. Run ``i`` (0 = newest) gets weight
``w_i = 0.5 ** (i / half_life_runs)``. With ``W = sum w``, the weighted mean ``m``, the unbiased weighted
variance ``s^2 = sum w (y - m)^2 / (W - sum w^2 / W)`` and the effective sample size
``n_eff = W^2 / sum w^2`` (Kish):

- ``p50 = exp(m)``, the median of the next run;
- ``p90 = exp(m + t_{0.9, n_eff - 1} * s * sqrt(1 + 1/n_eff))``: the Student-t *predictive* quantile,
  which accounts for not knowing the true mean and spread, so p90 covers ~90% of next runs even for
  short histories (the test checks 20-run lognormal histories across many seeds);
- ``confidence = n_eff / (n_eff + 4) * p50 / p90`` in [0, 1]: rises with the (effective) number of
  runs and falls with dispersion. 3 identical runs: 0.43; 20 runs with a 10% spread: about 0.73.

Below ``min_samples`` runs: ``available=False``, notes "insufficient history".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import stdtrit

__all__ = ["RuntimePrediction", "predict_runtime", "student_t_ppf"]

MIN_DURATION_SEC = 1.0  # durations below 1 s are read as 1 s (logs must be finite)


@dataclass(frozen=True)
class RuntimePrediction:
    """Predicted runtime quantiles in seconds; ``confidence`` in [0, 1] (see module docstring)."""

    available: bool
    p50_sec: float | None
    p90_sec: float | None
    confidence: float | None
    sample_size: int
    notes: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "available": self.available,
            "p50_sec": self.p50_sec,
            "p90_sec": self.p90_sec,
            "confidence": self.confidence,
            "sample_size": self.sample_size,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- Student-t quantile


@lru_cache(maxsize=4096)
def student_t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t with ``df`` (> 0, may be fractional) degrees of freedom, for q in (0, 1)."""
    if not 0.0 < q < 1.0 or df <= 0:
        raise ValueError("student_t_ppf needs 0 < q < 1 and df > 0")
    return float(stdtrit(df, q))


# --------------------------------------------------------------------------- prediction


def predict_runtime(
    durations_sec: Sequence[float],
    ages_sec: Sequence[float] | None = None,
    min_samples: int = 3,
    half_life_runs: float | None = 10.0,
) -> RuntimePrediction:
    """Predict the next run's p50/p90 (seconds) from past SUCCEEDED runs' durations (seconds).

    ``ages_sec``: age of each run (seconds before now, larger = older) to order them by recency; without
    it ``durations_sec`` is taken as chronological (last = newest). ``half_life_runs``: a run that many
    runs older counts half as much (None = equal weights). ValueError on negative or non-finite input.
    """
    d = np.asarray(list(durations_sec), dtype=np.float64)
    n = int(d.size)
    if n and (not np.all(np.isfinite(d)) or np.any(d < 0)):
        raise ValueError("durations must be finite and >= 0 seconds")
    if ages_sec is not None:
        a = np.asarray(list(ages_sec), dtype=np.float64)
        if a.size != n:
            raise ValueError("ages_sec and durations_sec differ in length")
        newest_first = d[np.argsort(a, kind="stable")]
    else:
        newest_first = d[::-1]
    if n < max(1, min_samples):
        return RuntimePrediction(False, None, None, None, n, "insufficient history")
    if half_life_runs is not None and half_life_runs <= 0:
        raise ValueError("half_life_runs must be positive")

    y = np.log(np.maximum(newest_first, MIN_DURATION_SEC))
    w = np.ones(n) if half_life_runs is None else 0.5 ** (np.arange(n) / half_life_runs)
    sw, sw2 = float(w.sum()), float((w * w).sum())
    m = float(w @ y) / sw
    n_eff = sw * sw / sw2
    p50 = math.exp(m)
    if n < 2:
        p90 = p50
        note = "1 run: no spread yet, p90 = p50"
    else:
        var = float(w @ (y - m) ** 2) / (sw - sw2 / sw)
        s = math.sqrt(max(var, 0.0))
        df = max(n_eff - 1.0, 0.5)
        p90 = math.exp(m + student_t_ppf(0.9, round(df, 4)) * s * math.sqrt(1.0 + 1.0 / n_eff))
        hl = "equal weights" if half_life_runs is None else f"recency half-life {half_life_runs:g} runs"
        note = f"{n} runs ({hl}, effective sample size {n_eff:.1f})"
    confidence = n_eff / (n_eff + 4.0) * (p50 / p90)
    return RuntimePrediction(True, p50, p90, float(min(max(confidence, 0.0), 1.0)), n, note)
