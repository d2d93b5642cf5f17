"""Measured skill of the live forecasts the product used (issue 18), and the sigma planning takes from it.

- **Pairs.** Once the maintenance loop has measured a finished run (``services/actuals.py``), the forecast
  its plan used (the audit record's series at decision time, ``services/plan_audit.py``) is paired with the
  measured intensity, hour by hour, over the run's interval and over its baseline interval:
  :func:`record_pairs`. Only a live provider's own forecast counts (not its measured points, nor the
  spliced continuation), and only when the same provider measured it (same signal).
- **Skill** per (provider, zone) and lead time: ``scheduling.skill.lead_skill`` over the latest
  :data:`MAX_PAIRS` pairs: bias, MAE, the measured relative sigma, coverage of the stated 80 % interval,
  and the sigma in use (the prior below ``scheduling.skill.MIN_PAIRS`` pairs per lead bucket).
- **Prior**: the provider's documented relative sigma (``relative_sigma``: e.g. 5 % + 0.3 %/h, at most
  30 %; ``carbon/keyed.py``, ``carbon/keyless.py``), or ``ORCH_CARBON_DEFAULT_REL_SIGMA`` for a provider
  without one.
- **Planning**: :func:`calibrated` puts the measured sigma on a live series' forecast points
  (``services.planning.carbon_series_info`` calls it for every plan and preview).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from carbon import REGISTRY, SeriesSource
from core.settings import Settings
from models.db import ForecastPair, Run, utcnow
from scheduling.carbon import CarbonSeries, floor_time
from scheduling.skill import LeadSkill, apply_lead_sigma, lead_skill
from services.plan_audit import run_record

__all__ = ["MAX_PAIRS", "METHOD", "Calibration", "calibrated", "prior_for", "record_pairs", "skill_table"]

log = logging.getLogger("orch.skill")

MAX_PAIRS = 5000  # pairs kept (and used) per (provider, zone), the latest
_HOUR = timedelta(hours=1)
METHOD = (
    "Each hour of a live forecast a plan used (values at decision time) is paired with the intensity the "
    "same provider measured for it once the run's actuals are recorded; lead time = hours from the "
    "forecast's issue to the middle of the hour. Per lead bucket (0-3, 3-6, 6-12, 12-24, 24-48, 48+ h): "
    "bias and MAE (measured - forecast), the RMS relative error, coverage of the 80 % interval stated at "
    "planning (forecast +- 1.2816 sigma). Sigma in use: the provider's documented prior below 30 pairs in "
    "a bucket, else sqrt((10 p^2 + n m) / (10 + n)) with p the prior and m the mean squared relative "
    "error of the n pairs (the latest 5000 per provider and zone)."
)


def prior_for(settings: Settings, provider: str) -> Callable[[np.ndarray], np.ndarray]:
    """The documented relative 1-sigma of ``provider``'s forecast by lead time (hours)."""
    cls = REGISTRY.get(provider)
    if cls is not None and hasattr(cls, "relative_sigma"):
        prov = cls(settings)
        return lambda h: np.asarray(prov.relative_sigma(np.asarray(h, dtype=np.float64)), dtype=np.float64)
    rel = float(settings.carbon_default_rel_sigma)
    return lambda h: np.full(np.shape(h), rel, dtype=np.float64)


def _pairs(session: Session, provider: str, zone: str) -> list[Any]:
    return list(
        session.execute(
            select(ForecastPair.lead_h, ForecastPair.forecast, ForecastPair.actual, ForecastPair.stated_sigma)
            .where(ForecastPair.provider == provider, ForecastPair.zone == zone)
            .order_by(ForecastPair.id.desc())
            .limit(MAX_PAIRS)
        ).all()
    )


def _skills(settings: Settings, provider: str, rows: list[Any]) -> list[LeadSkill]:
    arr = np.array([tuple(r) for r in rows], dtype=np.float64).reshape(-1, 4)
    return lead_skill(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], prior_for(settings, provider))


@dataclass(frozen=True)
class Calibration:
    """How a series' sigma was set: ``pairs`` measured pairs behind it, ``is_prior`` True when no lead
    bucket had enough of them (the provider's documented sigma is used as it is)."""

    pairs: int
    is_prior: bool


def calibrated(
    session: Session | None, settings: Settings, series: CarbonSeries, source: SeriesSource
) -> tuple[CarbonSeries, Calibration | None]:
    """``series`` with the measured sigma of its live forecast points
    (:func:`scheduling.skill.apply_lead_sigma`), for a live provider's series; other series unchanged
    (calibration None)."""
    if not source.live or session is None or source.zone is None or source.issued_at is None:
        return series, None
    rows = _pairs(session, source.provider, source.zone)
    if not rows:
        return series, Calibration(0, True)
    skills = _skills(settings, source.provider, rows)
    is_prior = all(s.is_prior for s in skills)
    if is_prior or source.live_until is None:
        return series, Calibration(len(rows), True)
    out = apply_lead_sigma(
        series, source.issued_at, source.live_until, skills, prior_for(settings, source.provider)
    )
    return out, Calibration(len(rows), False)


def _series(d: dict[str, Any] | None) -> CarbonSeries | None:
    if not d or d.get("values") is None:
        return None
    return CarbonSeries(
        datetime.fromisoformat(d["start"]),
        timedelta(seconds=float(d["step_sec"])),
        np.array(d["values"], dtype=np.float64),
        None if d.get("sigma") is None else np.array(d["sigma"], dtype=np.float64),
    )


def record_pairs(
    session: Session,
    run: Run,
    region: str,
    measured: CarbonSeries,
    measured_by: str | None,
    start: datetime,
    end: datetime,
) -> int:
    """Pair, hour by hour over ``[start, end)``, the forecast the run's plan used for ``region`` with the
    intensity ``measured_by`` measured; returns the number of new pairs (0 when the plan has no audit
    record, the region's forecast was not a live provider's, or another provider measured it). Idempotent
    per (run, provider, zone, hour). The caller commits."""
    record = run_record(session, run)
    if record is None or not measured_by:
        return 0
    entry = next((r for r in record.get("regions", []) if r.get("region") == region), None)
    if not entry or not entry.get("live") or entry.get("provider") != measured_by or not entry.get("zone"):
        return 0
    fc = _series(entry.get("series"))
    if fc is None or fc.sigma is None or not entry.get("issued_at") or not entry.get("live_until"):
        return 0
    issued = datetime.fromisoformat(entry["issued_at"])
    live_until = datetime.fromisoformat(entry["live_until"])
    sig = CarbonSeries(fc.start, fc.step, fc.sigma)
    provider, zone = str(entry["provider"]), str(entry["zone"])
    have = set(
        session.scalars(
            select(ForecastPair.at).where(
                ForecastPair.run_id == run.id, ForecastPair.provider == provider, ForecastPair.zone == zone
            )
        ).all()
    )
    added = 0
    h0 = floor_time(start, _HOUR)
    while h0 < end:
        h1 = h0 + _HOUR
        mid_lead = (h0 + _HOUR / 2 - issued) / _HOUR
        if (
            h0 not in have
            and mid_lead > 0
            and h1 <= live_until
            and fc.covers(h0, h1)
            and measured.covers(h0, h1)
        ):
            session.add(
                ForecastPair(
                    provider=provider,
                    zone=zone,
                    signal=str(entry.get("signal") or "average"),
                    run_id=run.id,
                    at=h0,
                    lead_h=float(mid_lead),
                    forecast=fc.integral(h0, h1),
                    actual=measured.integral(h0, h1),
                    stated_sigma=sig.integral(h0, h1),
                    recorded_at=utcnow(),
                )
            )
            have.add(h0)
            added += 1
        h0 = h1
    if added:
        session.flush()
        old = session.scalars(
            select(ForecastPair.id)
            .where(ForecastPair.provider == provider, ForecastPair.zone == zone)
            .order_by(ForecastPair.id.desc())
            .offset(MAX_PAIRS)
        ).all()
        if old:
            session.execute(delete(ForecastPair).where(ForecastPair.id.in_(list(old))))
    return added


def skill_table(
    session: Session, settings: Settings, provider: str | None = None, zone: str | None = None
) -> list[dict[str, Any]]:
    """``GET /v1/carbon/skill``: per (provider, zone) with pairs, the whole-sample figures and each lead
    bucket's (``scheduling.skill.LeadSkill``)."""
    keys = select(ForecastPair.provider, ForecastPair.zone, ForecastPair.signal).distinct()
    if provider:
        keys = keys.where(ForecastPair.provider == provider)
    if zone:
        keys = keys.where(ForecastPair.zone == zone)
    out: list[dict[str, Any]] = []
    for prov, zn, signal in sorted(session.execute(keys).all()):
        rows = _pairs(session, prov, zn)
        if not rows:
            continue
        arr = np.array([tuple(r) for r in rows], dtype=np.float64)
        ok = arr[:, 1] > 0
        err = arr[ok, 2] - arr[ok, 1]
        skills = _skills(settings, prov, rows)
        out.append(
            {
                "provider": prov,
                "zone": zn,
                "signal": signal,
                "pairs": int(ok.sum()),
                "mae": float(np.abs(err).mean()) if err.size else None,
                "bias": float(err.mean()) if err.size else None,
                "coverage_80": float(np.mean(np.abs(err) <= 1.2815515655446004 * arr[ok, 3] + 1e-12))
                if err.size
                else None,
                "is_prior": all(s.is_prior for s in skills),
                "by_lead": [s.__dict__ for s in skills],
            }
        )
    return out
