"""The carbon ledger (``GET /v1/reports/carbon``): per client, what its runs used and emitted, and what
carbon-aware scheduling saved, grouped by job template, recurring job, month or region (where each run ran,
``Run.region``; the saving stays against the plan's baseline: the home region at the baseline start).

Which runs: the client's runs that ran (SUCCEEDED, FAILED, TIMED_OUT) with ``started_at`` in [from, to).
Per run:

- energy: the fleet template's facility power (scheduling/catalog.py) x the run's measured runtime;
- emissions at the chosen start, the best figure recorded: the **measured** one (``carbon_actual_g``: the
  provider's actual intensity over the interval the run really occupied its fleet, recorded after the run
  by the ``record_carbon_actuals`` maintenance task, services/actuals.py), else the estimate made when the
  run ended from the series then known (``carbon_realised_g``), else the plan's **forecast** for the chosen
  start (``carbon_chosen_g``);
- emissions at the baseline start: the **measured** figure over the baseline interval (the window's
  earliest start, for the same real runtime: ``carbon_actual_baseline_g``), else the plan's forecast
  ``carbon_earliest_g`` for the planned runtime (p50); next to a figure over the run's real interval it is
  scaled to the runtime that really happened (x runtime / p50) so both cover the same work; a run with no
  baseline counts its chosen figure (saving 0);
- saving = baseline - chosen.

Audit: a forecast figure (``carbon_chosen_g``, ``carbon_earliest_g``) recomputes from the plan's audit
record, ``GET /v1/runs/{id}/plan`` (``services/plan_audit.py``): the series the plan used, the runtime and the
power (README "The plan's audit record").

Forecast vs actuals: a run **rests on actuals** when both its chosen and its baseline figures are measured;
all its figures (kWh, chosen, baseline, saving) then go to the ``*_actual`` columns, those of every other
run (a forecast, a climatology or an estimate from them in at least one of the two) to ``*_forecast``.
Each pair adds up exactly to its total column.

Exactness: each run's figures are rounded once to integer milligrams (energy to integer mWh) and every sum is
an integer sum, so the rows add up exactly to the total and the total to the runs; JSON, CSV and the chart
show the same integers divided by 1000 (10^6 for kWh).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import JobTemplate, RecurringJob, Run
from scheduling.catalog import fleet_power_kw, get_fleet_template

RAN = ("SUCCEEDED", "FAILED", "TIMED_OUT")
CSV_COLUMNS = [
    "key",
    "label",
    "runs",
    "energy_kwh",
    "emissions_chosen_g",
    "emissions_baseline_g",
    "saving_g",
    "saving_forecast_g",
    "saving_actual_g",
    "runs_with_actuals",
    "energy_forecast_kwh",
    "energy_actual_kwh",
    "emissions_chosen_forecast_g",
    "emissions_chosen_actual_g",
    "emissions_baseline_forecast_g",
    "emissions_baseline_actual_g",
]


@dataclass
class RunFigures:
    """One run's ledger figures in integer units (mWh, mg)."""

    run_id: str
    template_id: str
    recurring_job_id: str | None
    month: str
    energy_mwh: int
    chosen_mg: int
    baseline_mg: int
    actual: bool  # both the chosen and the baseline figure are measured
    region: str = ""  # issue 14: where it ran ("" for runs planned before regions were recorded)

    @property
    def saving_mg(self) -> int:
        return self.baseline_mg - self.chosen_mg


@dataclass
class Totals:
    key: str
    label: str
    runs: int = 0
    energy_mwh: int = 0
    chosen_mg: int = 0
    baseline_mg: int = 0
    saving_forecast_mg: int = 0
    saving_actual_mg: int = 0
    runs_with_actuals: int = 0
    energy_actual_mwh: int = 0
    chosen_actual_mg: int = 0
    baseline_actual_mg: int = 0

    def add(self, f: RunFigures) -> None:
        self.runs += 1
        self.energy_mwh += f.energy_mwh
        self.chosen_mg += f.chosen_mg
        self.baseline_mg += f.baseline_mg
        if f.actual:
            self.saving_actual_mg += f.saving_mg
            self.runs_with_actuals += 1
            self.energy_actual_mwh += f.energy_mwh
            self.chosen_actual_mg += f.chosen_mg
            self.baseline_actual_mg += f.baseline_mg
        else:
            self.saving_forecast_mg += f.saving_mg

    @property
    def saving_mg(self) -> int:
        return self.baseline_mg - self.chosen_mg

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "runs": self.runs,
            "energy_kwh": self.energy_mwh / 1_000_000,
            "emissions_chosen_g": self.chosen_mg / 1000,
            "emissions_baseline_g": self.baseline_mg / 1000,
            "saving_g": self.saving_mg / 1000,
            "saving_forecast_g": self.saving_forecast_mg / 1000,
            "saving_actual_g": self.saving_actual_mg / 1000,
            "runs_with_actuals": self.runs_with_actuals,
            "energy_forecast_kwh": (self.energy_mwh - self.energy_actual_mwh) / 1_000_000,
            "energy_actual_kwh": self.energy_actual_mwh / 1_000_000,
            "emissions_chosen_forecast_g": (self.chosen_mg - self.chosen_actual_mg) / 1000,
            "emissions_chosen_actual_g": self.chosen_actual_mg / 1000,
            "emissions_baseline_forecast_g": (self.baseline_mg - self.baseline_actual_mg) / 1000,
            "emissions_baseline_actual_g": self.baseline_actual_mg / 1000,
        }


@dataclass
class Ledger:
    rows: list[Totals]
    total: Totals
    runs: list[RunFigures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _mg(grams: float | None) -> int:
    return int(round((grams or 0.0) * 1000))


def run_figures(r: Run) -> RunFigures:
    ft = get_fleet_template(r.fleet_template_id)
    power = fleet_power_kw(ft) if ft is not None else 0.0
    energy_mwh = int(round(power * float(r.runtime_sec or 0.0) / 3600.0 * 1_000_000))
    measured = r.carbon_actual_g is not None
    # the chosen figure: measured, else the estimate over the real interval, else the plan's forecast
    chosen = r.carbon_actual_g if measured else r.carbon_realised_g
    real_interval = chosen is not None  # the figure covers the runtime that really happened
    if chosen is None:
        chosen = r.carbon_chosen_g
    baseline: float | None
    if r.carbon_actual_baseline_g is not None:
        baseline, baseline_measured = r.carbon_actual_baseline_g, True
    elif r.carbon_earliest_g is not None:
        baseline, baseline_measured = r.carbon_earliest_g, False
        if real_interval and r.plan and r.plan.get("p50_sec") and r.runtime_sec:
            # the baseline was forecast for the planned runtime (p50): scale it to the runtime that really
            # happened, which the chosen figure covers
            baseline = r.carbon_earliest_g * float(r.runtime_sec) / float(r.plan["p50_sec"])
    else:
        baseline, baseline_measured = chosen, measured  # no baseline: saving 0, on the chosen figure's basis
    start = r.started_at
    return RunFigures(
        run_id=r.id,
        template_id=r.job_template_id,
        recurring_job_id=r.recurring_job_id,
        month=start.strftime("%Y-%m") if start else "",
        energy_mwh=energy_mwh,
        chosen_mg=_mg(chosen),
        baseline_mg=_mg(baseline),
        actual=measured and baseline_measured,
        region=r.region or "",
    )


def carbon_ledger(session: Session, client_id: str, start: datetime, end: datetime, group_by: str) -> Ledger:
    runs = list(
        session.scalars(
            select(Run)
            .where(
                Run.client_id == client_id,
                Run.status.in_(RAN),
                Run.started_at.is_not(None),
                Run.started_at >= start,
                Run.started_at < end,
            )
            .order_by(Run.started_at, Run.id)
        )
    )
    figures = [run_figures(r) for r in runs]
    labels: dict[str, str] = {}
    if group_by == "template":
        ids = {f.template_id for f in figures}
        labels = dict(
            session.execute(select(JobTemplate.id, JobTemplate.name).where(JobTemplate.id.in_(ids))).all()
        )
    elif group_by == "recurring_job":
        ids = {f.recurring_job_id for f in figures if f.recurring_job_id}
        for rid, name, cron, interval in session.execute(
            select(RecurringJob.id, RecurringJob.name, RecurringJob.cron, RecurringJob.interval).where(
                RecurringJob.id.in_(ids)
            )
        ):
            labels[rid] = name or (f"cron {cron}" if cron else f"every {interval}")
        labels[""] = "one-off jobs"
    elif group_by == "region":
        labels[""] = "region not recorded"
    groups: dict[str, Totals] = {}
    for f in figures:
        key = {
            "template": f.template_id,
            "recurring_job": f.recurring_job_id or "",
            "month": f.month,
            "region": f.region,
        }[group_by]
        if key not in groups:
            groups[key] = Totals(key=key, label=labels.get(key, key))
        groups[key].add(f)
    total = Totals(key="total", label="total")
    for f in figures:
        total.add(f)
    notes = []
    missing = sum(
        1
        for r in runs
        if r.carbon_chosen_g is None and r.carbon_realised_g is None and r.carbon_actual_g is None
    )
    if missing:
        notes.append(f"{missing} run(s) have no carbon estimate and count 0 g")
    return Ledger(rows=[groups[k] for k in sorted(groups)], total=total, runs=figures, notes=notes)


def ledger_csv(ledger: Ledger) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in [*ledger.rows, ledger.total]:
        w.writerow(row.as_dict())
    return buf.getvalue()


def ledger_svg(session: Session, client_id: str, start: datetime, end: datetime) -> str:
    """Bar chart: baseline vs chosen emissions (kg CO2e) per month."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = carbon_ledger(session, client_id, start, end, "month").rows
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = list(range(len(months)))
    base = [m.baseline_mg / 1e6 for m in months]
    chosen = [m.chosen_mg / 1e6 for m in months]
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="baseline start (earliest)", color="#bbbbbb")
    ax.bar([x + 0.2 for x in xs], chosen, width=0.4, label="chosen start", color="#2e8b57")
    ax.set_xticks(xs, [m.key for m in months])
    ax.set_ylabel("kg CO2e")
    saved = sum(m.saving_mg for m in months) / 1e6
    ax.set_title(f"Emissions per month: baseline vs chosen (saved {saved:.3f} kg CO2e)")
    if not months:
        ax.text(0.5, 0.5, "no runs in this period", ha="center", va="center", transform=ax.transAxes)
    ax.legend()
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    return buf.getvalue()
