"""The paired, empirical decision rule for history-based forecasts (README "How a start is chosen").

A forecast built from a past series (the ``embedded`` 2023 climatology) knows the usual shape of a day, not
today's weather. Whether moving a job from its baseline start ``b`` to a candidate start ``s`` pays is
therefore judged on the history itself, day by day: for the ``N`` history days nearest the plan date (the
year read as a 52-week cycle, like the climatology, so weekdays line up; wrapping over the year end), the
run-length integral of intensity is computed at ``s`` and at ``b`` at the same UTC times of that day, and

- ``paired_mean_saving_pct`` = mean over the days of ``(I_b - I_s) / I_b x 100``,
- ``paired_days_saved`` = the number of days with ``I_s < I_b``.

A candidate is allowed when its mean saving is at least ``min_mean_saving_pct`` and at least ``min_t``
standard errors above zero (``t`` = sum of the daily savings / sqrt(sum of their squares)), and its share of
days saved at least ``min_share_saved`` (the baseline is always allowed); the objective then chooses among
the allowed starts. Thresholds and whether a zone may shift on history at all come from
``scheduling/data/paired_skill.json``, made by ``scripts/paired_skill.py`` by leave-one-month-out
cross-validation inside 2023 (README; the file records the method and per-zone out-of-sample figures).

Speed: :class:`PairedHistory` keeps the cycle (plus a wrapped tail) as prefix sums and, per day of the
cycle, the order of the nearest days; one plan's paired integrals are two gathers of ``N x starts``
values (all days share the same fractional hour offsets).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "CYCLE_DAYS",
    "PairedHistory",
    "PairedSkill",
    "allowed",
    "band_of",
    "paired_figures",
    "paired_history",
    "paired_skill",
    "skill_table",
]

DAY_SEC = 86400.0
HOUR_SEC = 3600.0
CYCLE_DAYS = 364  # 52 weeks, as the climatology (scheduling.forecast): weekdays line up across years
TAIL_DAYS = 40  # the cycle is extended by its first days so windows wrap over the year end
ORDER_MARGIN = 45  # nearest-day lists keep this many spares for days a held-out month makes unusable
DEFAULT_DAYS = 29  # +-14 days around the same day of the cycle
DEFAULT_MIN_MEAN_SAVING_PCT = 1.0
DEFAULT_MIN_SHARE_SAVED = 0.7
DEFAULT_MIN_T = 0.0
SKILL_FILE = "paired_skill.json"


@dataclass(frozen=True)
class PairedSkill:
    """The rule's thresholds and whether ``zone`` may leave its baseline on history alone (``reason``
    says why not, from the cross-validation)."""

    zone: str | None = None
    allowed: bool = True
    min_mean_saving_pct: float = DEFAULT_MIN_MEAN_SAVING_PCT
    min_share_saved: float = DEFAULT_MIN_SHARE_SAVED
    days: int = DEFAULT_DAYS
    reason: str = ""
    min_t: float = DEFAULT_MIN_T
    # (calendar month, UTC hour at the centre of a 6-hour band, why): the zone stays at its baseline there
    seasons_off: tuple[tuple[int, int, str], ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_mean_saving_pct) and self.min_mean_saving_pct >= 0):
            raise ValueError(f"min_mean_saving_pct must be >= 0, got {self.min_mean_saving_pct}")
        if not (math.isfinite(self.min_share_saved) and 0 <= self.min_share_saved <= 1):
            raise ValueError(f"min_share_saved must be in [0, 1], got {self.min_share_saved}")
        if not (math.isfinite(self.min_t) and self.min_t >= 0):
            raise ValueError(f"min_t must be >= 0, got {self.min_t}")
        if not 1 <= self.days <= CYCLE_DAYS:
            raise ValueError(f"days must be in 1..{CYCLE_DAYS}, got {self.days}")
        if any(not (1 <= m <= 12 and 0 <= h < 24) for m, h, _ in self.seasons_off):
            raise ValueError(f"seasons_off needs (month 1..12, hour 0..23, reason), got {self.seasons_off}")

    def at(self, t: datetime) -> PairedSkill:
        """The rule for a plan whose baseline start is ``t``: shifting is off in a season (calendar month and
        6-hour band of the day, UTC) the table switches off for this zone (its reason then says why), else
        the zone's rule unchanged."""
        if not self.allowed or not self.seasons_off:
            return self
        u = t.astimezone(UTC)
        for month, centre, why in self.seasons_off:
            if month == u.month and band_of(u.hour) == band_of(centre):
                return replace(self, allowed=False, reason=why)
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "rule": "paired",
            "zone": self.zone,
            "allowed": self.allowed,
            "days": self.days,
            "min_mean_saving_pct": self.min_mean_saving_pct,
            "min_share_saved": self.min_share_saved,
            "min_t": self.min_t,
            **({"reason": self.reason} if self.reason else {}),
        }


def band_of(hour: int) -> int:
    """The 6-hour band of the day (UTC) of ``hour``: 0 = 22-04 h, 1 = 04-10 h, 2 = 10-16 h, 3 = 16-22 h (the
    bands are centred on the skill table's scenario hours 01, 07, 13 and 19 UTC)."""
    return ((hour - 22) % 24) // 6


@lru_cache(maxsize=1)
def skill_table() -> dict[str, Any]:
    """The shipped table (``scheduling/data/paired_skill.json``); an empty one when it is absent."""
    try:
        raw = resources.files("scheduling.data").joinpath(SKILL_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out: dict[str, Any] = json.loads(raw)
    return out


def paired_skill(zone: str | None, fold: int | None = None) -> PairedSkill:
    """The rule for ``zone`` from the shipped table; ``fold`` = a month 1..12: the thresholds and zone
    decision fitted without that month (for the out-of-sample backtest)."""
    table = skill_table()
    src = table.get("folds", {}).get(str(fold), {}) if fold is not None else table
    th = src.get("thresholds", table.get("thresholds", {}))
    zrow = src.get("zones", {}).get(zone or "", {})
    return PairedSkill(
        zone=zone,
        allowed=bool(zrow.get("allowed", True)),
        min_mean_saving_pct=float(th.get("min_mean_saving_pct", DEFAULT_MIN_MEAN_SAVING_PCT)),
        min_share_saved=float(th.get("min_share_saved", DEFAULT_MIN_SHARE_SAVED)),
        days=int(th.get("days", DEFAULT_DAYS)),
        min_t=float(th.get("min_t", DEFAULT_MIN_T)),
        reason=str(zrow.get("reason", "")),
        seasons_off=tuple(
            sorted((int(o["month"]), int(o["hour"]), str(o["reason"])) for o in zrow.get("seasons_off", []))
        ),
    )


@dataclass(eq=False)
class PairedHistory:
    """One zone's hourly history read as a 52-week cycle, ready for paired comparisons.

    ``start``: the UTC hour of ``hourly[0]`` (the cycle's day 0; a plan at time ``t`` falls on cycle day
    ``((t - start) // 1 day) mod 364``); ``hourly``: at least 364 days of hourly g/kWh.
    ``masked_days``: cycle days that must not be used (a held-out month): a day whose runs would touch a
    masked hour is skipped, and the next nearest day is used instead."""

    start: datetime
    hourly: np.ndarray
    skill: PairedSkill = field(default_factory=PairedSkill)
    masked_days: np.ndarray | None = None
    year_label: str = "2023"

    def __post_init__(self) -> None:
        y = np.asarray(self.hourly, dtype=np.float64)
        n = CYCLE_DAYS * 24
        if y.ndim != 1 or y.size < n:
            raise ValueError(f"paired history needs at least {CYCLE_DAYS} days of hourly values")
        if self.start.tzinfo is None:
            raise ValueError("paired history start must be timezone-aware (UTC)")
        self.start = self.start.astimezone(UTC)
        cyc = y[:n]
        ext = np.concatenate([cyc, cyc[: TAIL_DAYS * 24]])
        self._y = ext
        self._pre = np.concatenate([[0.0], np.cumsum(ext) * HOUR_SEC])  # g/kWh x s at each hour edge
        self._t0 = self.start.timestamp()
        mask = np.zeros(CYCLE_DAYS, dtype=bool)
        if self.masked_days is not None:
            mask[np.asarray(self.masked_days, dtype=np.int64) % CYCLE_DAYS] = True
        self._mask = mask
        hours_masked = np.repeat(mask, 24)
        hm = np.concatenate([hours_masked, hours_masked[: TAIL_DAYS * 24]]).astype(np.int64)
        self._mpre = np.concatenate([[0], np.cumsum(hm)]) if mask.any() else None
        # per cycle day: the other days ordered by cyclic distance (ties: earlier day first), unmasked only
        d = np.arange(CYCLE_DAYS)
        dist = np.abs(d[None, :] - d[:, None])
        dist = np.minimum(dist, CYCLE_DAYS - dist) * 2 + (d[None, :] > d[:, None])  # before after, on ties
        dist[:, mask] = 10**6
        keep = min(CYCLE_DAYS, self.skill.days + ORDER_MARGIN)
        self._order = np.argsort(dist, axis=1, kind="stable")[:, :keep]
        self._usable = ~mask[self._order]

    @property
    def days(self) -> int:
        return self.skill.days

    def cycle_position(self, t: datetime) -> float:
        """Seconds since the start of the cycle for ``t`` (in [0, 364 days))."""
        return (t.timestamp() - self._t0) % (CYCLE_DAYS * DAY_SEC)

    def _bases(self, earliest: datetime, ref: datetime, days: np.ndarray) -> np.ndarray:
        """Seconds into the (extended) cycle where a window opening at ``earliest`` opens on each of
        ``days``, read at the same UTC times relative to ``ref``'s day."""
        cyc = CYCLE_DAYS * DAY_SEC
        d_ref = int(self.cycle_position(ref) // DAY_SEC)
        rel = (self.cycle_position(earliest) - d_ref * DAY_SEC + cyc / 2) % cyc - cyc / 2
        base = days.astype(np.float64) * DAY_SEC + rel
        return np.where(base < 0, base + cyc, base)

    def paired_days(
        self, ref: datetime, earliest: datetime | None = None, span_sec: float = 0.0
    ) -> np.ndarray:
        """The cycle days paired with a plan whose baseline start is ``ref`` (nearest first, at most
        ``days``), skipping days on which ``[earliest, earliest + span_sec]`` would touch a masked hour."""
        d0 = int(self.cycle_position(ref) // DAY_SEC)
        cand = self._order[d0][self._usable[d0]]
        if self._mpre is not None:
            lo_s = self._bases(earliest or ref, ref, cand)
            lo = np.floor(lo_s / HOUR_SEC).astype(np.int64)
            hi = np.minimum(np.ceil((lo_s + span_sec) / HOUR_SEC).astype(np.int64), self._y.size)
            cand = cand[self._mpre[hi] - self._mpre[lo] == 0]
        return cand[: self.days]

    def integrals(
        self, earliest: datetime, offsets_sec: np.ndarray, run_sec: float, days: np.ndarray, ref: datetime
    ) -> np.ndarray:
        """``(len(days), len(offsets))`` run integrals (g/kWh x s) of ``[earliest + o, earliest + o + run]``
        read on each paired day: the day's own UTC times, shifted by whole days from ``ref``'s day."""
        if run_sec < 0:
            raise ValueError("run_sec must be >= 0")
        base = self._bases(earliest, ref, days)
        span = float(np.max(offsets_sec, initial=0.0)) + run_sec
        if float(base.max(initial=0.0)) + span > self._y.size * HOUR_SEC:
            raise ValueError("window too long for the paired history")
        # the fractional hour of every start is the same on every day (days are whole hours apart): split
        # the offsets once, shift the hour index by 24 per day (C is continuous, so float noise at an
        # hour edge does not matter)
        day_h = np.floor(base / HOUR_SEC).astype(np.int64)
        rem = float(base[0] - day_h[0] * HOUR_SEC) if days.size else 0.0
        last = self._y.size - 1
        out: np.ndarray | None = None
        for off in (offsets_sec + run_sec, offsets_sec):
            x = rem + off
            ih = np.floor(x / HOUR_SEC).astype(np.int64)
            frac = x - ih * HOUR_SEC
            idx = ih[None, :] + day_h[:, None]
            c = self._pre[idx] + frac[None, :] * self._y[np.minimum(idx, last)]
            out = c if out is None else out - c
        assert out is not None
        return out

    def forecast_values(
        self, first_hour: datetime, n_hours: int, days: np.ndarray, ref: datetime
    ) -> np.ndarray:
        """``(len(days), n_hours)`` hourly values at ``first_hour + k h`` read on each paired day (same UTC
        times, shifted by whole days from ``ref``'s day); their mean is the paired days' climatology."""
        pos = self.cycle_position(first_hour)
        d_ref = int(self.cycle_position(ref) // DAY_SEC)
        rel = int(round((pos - d_ref * DAY_SEC) / HOUR_SEC))
        half = CYCLE_DAYS * 12
        rel = (rel + half) % (CYCLE_DAYS * 24) - half
        idx = (days[:, None] * 24 + rel + np.arange(n_hours)[None, :]) % (CYCLE_DAYS * 24)
        return self._y[idx]


def paired_figures(
    base_integrals: np.ndarray, integrals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean saving %, days saved, t) per column of ``integrals`` (days x starts) against the same day's
    baseline integral ``base_integrals`` (days,). ``t`` = sum of the daily savings / sqrt(sum of their
    squares) = the mean over its standard error when the true mean is 0 (the spread is taken around 0, not
    around the mean: then a day on which the start lost can only lower ``t``, so more history of that kind
    never makes the rule more eager; 0 when every saving is 0)."""
    ib = np.asarray(base_integrals, dtype=np.float64)
    pos = ib > 0
    if not pos.all():
        ib, integrals = ib[pos], integrals[pos]
    n = ib.size
    if n == 0:
        zeros = np.zeros(integrals.shape[1])
        return zeros, zeros.astype(np.int64), zeros
    inv = 1.0 / ib
    ratio_mean = inv @ integrals / n  # mean of I_s / I_b
    mean = 100.0 * (1.0 - ratio_mean)
    saved = (integrals < ib[:, None] * (1.0 - 1e-12)).sum(axis=0)
    sq = 1e4 * (1.0 - 2.0 * ratio_mean + (inv * inv) @ (integrals * integrals) / n)  # mean squared saving
    rms = np.sqrt(np.maximum(sq, 0.0))
    tol = 1e-9 * np.maximum(np.abs(mean), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(rms > tol, math.sqrt(n) * mean / np.where(rms > tol, rms, 1.0), 0.0)
    return mean, saved, t


def allowed(mean: np.ndarray, saved: np.ndarray, t: np.ndarray, days: int, skill: PairedSkill) -> np.ndarray:
    """The starts the rule allows on its figures (:func:`paired_figures`) over ``days`` days (the caller
    adds the baseline, which is always allowed, and the risk cap)."""
    if days < 1:
        return np.zeros(np.shape(mean), dtype=bool)
    return (
        (mean >= skill.min_mean_saving_pct - 1e-9)
        & (saved >= skill.min_share_saved * days - 1e-9)
        & (t >= skill.min_t - 1e-9)
    )


@lru_cache(maxsize=16)
def paired_history(zone: str) -> PairedHistory:
    """The packaged 2023 series of ``zone`` as a :class:`PairedHistory` with the shipped rule."""
    from scheduling.carbon import embedded_history

    h = embedded_history(zone)
    return PairedHistory(h.start, np.asarray(h.values), paired_skill(zone))


def months_of_cycle(start: datetime) -> np.ndarray:
    """The calendar month (1..12) of every cycle day counted from ``start``."""
    return np.array([(start + timedelta(days=int(d))).month for d in range(CYCLE_DAYS)])


def zone_month_days(start: datetime, months: Sequence[int]) -> np.ndarray:
    """The cycle days that fall in ``months``."""
    m = months_of_cycle(start)
    return np.flatnonzero(np.isin(m, list(months)))
