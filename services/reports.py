"""The carbon ledger (``GET /v1/reports/carbon``): per client, what its runs used and emitted, and what
carbon-aware scheduling saved, grouped by job template, recurring job, month or region (where each run ran,
``Run.region``; the saving stays against the plan's baseline: the home region at the baseline start).

Which runs: the client's runs that ran (SUCCEEDED, FAILED, TIMED_OUT) with ``started_at`` in [from, to).
Per run:

- energy: the fleet template's facility power (scheduling/catalog.py) x the run's measured runtime;
- emissions at the chosen start: the **actual** figure where one was recorded after the run (the intensity
  over the interval the run really occupied its fleet, ``carbon_realised_g``), else the plan's **forecast**
  for the chosen start (``carbon_chosen_g``);
- emissions at the baseline start (the window's earliest start, from the same plan): ``carbon_earliest_g``,
  forecast for the planned runtime (p50); next to an actual figure it is scaled to the runtime that really
  happened (x runtime / p50) so both cover the same work; a run with no baseline counts its chosen figure
  (saving 0);
- saving = baseline - chosen, attributed to ``saving_actual_g`` or ``saving_forecast_g`` by the basis of
  the chosen figure.

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
    actual: bool
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

    def add(self, f: RunFigures) -> None:
        self.runs += 1
        self.energy_mwh += f.energy_mwh
        self.chosen_mg += f.chosen_mg
        self.baseline_mg += f.baseline_mg
        if f.actual:
            self.saving_actual_mg += f.saving_mg
            self.runs_with_actuals += 1
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
    actual = r.carbon_realised_g is not None
    chosen = r.carbon_realised_g if actual else r.carbon_chosen_g
    baseline = r.carbon_earliest_g if r.carbon_earliest_g is not None else chosen
    if actual and r.carbon_earliest_g is not None and r.plan and r.plan.get("p50_sec") and r.runtime_sec:
        # the baseline was forecast for the planned runtime (p50): scale it to the runtime that really
        # happened, which the actual figure covers
        baseline = r.carbon_earliest_g * float(r.runtime_sec) / float(r.plan["p50_sec"])
    start = r.started_at
    return RunFigures(
        run_id=r.id,
        template_id=r.job_template_id,
        recurring_job_id=r.recurring_job_id,
        month=start.strftime("%Y-%m") if start else "",
        energy_mwh=energy_mwh,
        chosen_mg=_mg(chosen),
        baseline_mg=_mg(baseline),
        actual=actual,
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
    missing = sum(1 for r in runs if r.carbon_chosen_g is None and r.carbon_realised_g is None)
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
