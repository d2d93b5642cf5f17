"""Measured carbon after a run (issue 13): what a finished run and its baseline emitted by the provider's
actual intensity, for the carbon ledger (services/reports.py).

A run is due when it ran (SUCCEEDED, FAILED, TIMED_OUT), finished in the last ``ORCH_CARBON_ACTUALS_DAYS``
days, has no measured figure yet for its real interval or its baseline interval, and was not looked at in
the last ``ORCH_CARBON_CACHE_TTL_SEC`` (providers publish actuals with a delay: a run is asked about again
after that long, until it is older than ``ORCH_CARBON_ACTUALS_DAYS``). For each due run:

- the run's interval is ``[started_at, finished_at]``; its baseline interval is the same runtime from the
  baseline start the planner used (the window's start, ``intended_time`` for ONE_TIME, ``earliest_start``
  otherwise, or the run's creation time if that was later);
- ``carbon.measured_series`` asks the region's sources for measured intensity only (never a forecast or a
  climatology; see carbon/actuals.py); gCO2e = fleet power (kW, scheduling/catalog.py) x the integral of
  that intensity (g/kWh x h);
- the baseline is recorded only from the source that measured the run's interval, so a saving on actuals
  never compares two different signals;
- what is missing and why goes to ``carbon_actual_note``, the time of the attempt to
  ``carbon_actual_checked_at``;
- the forecast the run's plan used (its audit record) is paired hour by hour with what was measured, for
  the forecast's skill (``services/skill.py``, issue 18).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from carbon import measured_series
from core.settings import Settings
from models.db import Client, Job, Run
from scheduling.catalog import fleet_power_kw, get_fleet_template
from services.job_templates import template_at
from services.regions import home_region

__all__ = ["ActualsPass", "baseline_interval", "due_runs", "record_run_actuals"]

log = logging.getLogger("orch.actuals")

RAN = ("SUCCEEDED", "FAILED", "TIMED_OUT")


@dataclass
class ActualsPass:
    examined: int = 0
    recorded: int = 0  # runs whose chosen and baseline figures are now both measured
    partial: int = 0  # runs with one of the two measured
    unavailable: int = 0  # runs with neither (yet)


def due_runs(session: Session, settings: Settings, now: datetime, limit: int) -> list[Run]:
    """Finished runs still missing a measured figure (see the module docstring), oldest first."""
    horizon = now - timedelta(days=max(1, int(settings.carbon_actuals_days)))
    retry_before = now - timedelta(seconds=max(1, int(settings.carbon_cache_ttl_sec)))
    return list(
        session.scalars(
            select(Run)
            .where(
                Run.status.in_(RAN),
                Run.started_at.is_not(None),
                Run.finished_at.is_not(None),
                Run.finished_at <= now,
                Run.finished_at >= horizon,
                or_(Run.carbon_actual_g.is_(None), Run.carbon_actual_baseline_g.is_(None)),
                or_(Run.carbon_actual_checked_at.is_(None), Run.carbon_actual_checked_at < retry_before),
            )
            .order_by(Run.finished_at, Run.id)
            .limit(limit)
        )
    )


def baseline_interval(run: Run, job: Job | None) -> tuple[datetime, datetime] | None:
    """The baseline start the planner used and the same real runtime after it (None without times)."""
    if run.started_at is None or run.finished_at is None:
        return None
    window_start = None
    if job is not None:
        window_start = job.intended_time if job.type == "ONE_TIME" else job.earliest_start
    start = max(window_start, run.created_at) if window_start is not None else run.created_at
    return start, start + (run.finished_at - run.started_at)


def record_run_actuals(
    session: Session, settings: Settings, run: Run, now: datetime, http: httpx.Client | None = None
) -> str:
    """Look up and store the measured figures of one run; returns "recorded", "partial" or "unavailable".
    The caller commits. The rows are read first, so no write (and no SQLite write lock) is pending while
    the provider is asked."""
    assert run.started_at is not None and run.finished_at is not None  # due_runs selects only such runs
    template = template_at(session, run.job_template_id, run.job_template_version)
    client = session.get(Client, run.client_id)
    job = session.get(Job, run.job_id)
    run.carbon_actual_checked_at = now
    ft = get_fleet_template(run.fleet_template_id)
    if ft is None:
        run.carbon_actual_note = f"unknown fleet template {run.fleet_template_id!r}: no power figure"
        return "unavailable"
    power_kw = fleet_power_kw(ft)
    if template is None:
        run.carbon_actual_note = "the run's job template no longer exists"
        return "unavailable"
    home = home_region(template, client)
    region = run.region or home  # where it ran; the baseline is the home region's (issue 14)
    notes: list[str] = []
    source_name: str | None = None
    if run.carbon_actual_g is None:
        if run.finished_at <= run.started_at:
            run.carbon_actual_g, run.carbon_actual_intensity = 0.0, None
            run.carbon_actual_source = "no runtime"
        else:
            m = measured_series(region, run.started_at, run.finished_at, settings=settings, http=http)
            if m.series is None:
                notes.append(f"run interval not measured: {m.why_not()}")
            else:
                kwh_per_kw = m.series.integral(run.started_at, run.finished_at)  # g/kWh x h
                hours = (run.finished_at - run.started_at).total_seconds() / 3600.0
                run.carbon_actual_g = power_kw * kwh_per_kw
                run.carbon_actual_intensity = kwh_per_kw / hours
                run.carbon_actual_source = m.source
                source_name = m.name
                _pair(session, run, region, m.series, m.name, run.started_at, run.finished_at)
    if run.carbon_actual_baseline_g is None:
        interval = baseline_interval(run, job)
        if region != home and (interval is None or interval[1] <= interval[0]):
            interval = (run.started_at, run.finished_at)  # the same hours, had it stayed home
        if run.carbon_actual_g is None:
            pass  # the baseline is measured by the run interval's source, once there is one
        elif interval is None or interval[1] <= interval[0]:
            run.carbon_actual_baseline_g = run.carbon_actual_g
        elif interval[1] > now:
            notes.append("baseline interval not over yet")
        else:
            provider = source_name or _source_name(run.carbon_actual_source)
            m = measured_series(
                home, interval[0], interval[1], settings=settings, http=http, provider=provider
            )
            if m.series is None or (provider is not None and m.name != provider):
                why = m.why_not() if m.series is None else f"only {m.name} measured it"
                notes.append(f"baseline interval not measured by {provider or 'the same source'}: {why}")
            else:
                run.carbon_actual_baseline_g = power_kw * m.series.integral(*interval)
                _pair(session, run, home, m.series, m.name, *interval)
    run.carbon_actual_note = "; ".join(notes)[:2000] or None
    both = run.carbon_actual_g is not None and run.carbon_actual_baseline_g is not None
    if both:
        return "recorded"
    return "partial" if run.carbon_actual_g is not None else "unavailable"


def _pair(session: Session, run: Run, region: str, measured, name, start: datetime, end: datetime) -> None:
    """Pair the forecast the run's plan used with what was measured (issue 18: the forecast's skill);
    never fails the actuals."""
    from services.skill import record_pairs

    try:
        with session.begin_nested():
            record_pairs(session, run, region, measured, name, start, end)
    except Exception:  # noqa: BLE001 - the skill is informative; the measured figures count
        log.warning("forecast/measured pairs of run %s failed", run.id, exc_info=True)


def _source_name(source: str | None) -> str | None:
    """The provider name at the start of a recorded ``carbon_actual_source`` ("csv x.csv (actuals)")."""
    if not source or source == "no runtime":
        return None
    return source.split(":", 1)[0].split(" ", 1)[0]


def record_actuals(
    session: Session,
    settings: Settings,
    now: datetime,
    limit: int = 50,
    http: httpx.Client | None = None,
    budget_sec: float = 60.0,
) -> ActualsPass:
    """One pass over at most ``limit`` due runs, each committed on its own, for at most ``budget_sec`` of
    wall time (a slow or hanging provider must not hold the maintenance pass; the rest waits for the next)."""
    out = ActualsPass()
    runs = due_runs(session, settings, now, limit)
    session.commit()  # end the read transaction before the provider calls
    stop_at = time.monotonic() + budget_sec
    for run in runs:
        if time.monotonic() > stop_at:
            break
        out.examined += 1
        try:
            verdict = record_run_actuals(session, settings, run, now, http)
        except Exception as exc:  # noqa: BLE001 - one run's bad data must not stop the pass
            log.warning("measured carbon of run %s failed", run.id, exc_info=True)
            run.carbon_actual_checked_at = now
            run.carbon_actual_note = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            verdict = "unavailable"
        session.commit()
        setattr(out, verdict, getattr(out, verdict) + 1)
    return out
