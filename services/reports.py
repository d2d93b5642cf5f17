"""The carbon ledger (``GET /v1/reports/carbon``): per client, what its runs used and emitted, and what
carbon-aware scheduling saved, grouped by job template, recurring job, month or region (where each run ran,
``Run.region``; the saving stays against the plan's baseline: the home region at the baseline start).

Which runs (the scope): the client's runs that consumed compute, i.e. that started (``started_at`` in
[from, to)) and ended, whatever their outcome: SUCCEEDED, FAILED, TIMED_OUT and CANCELLED (cancelled while
running; a run cancelled before it started has no ``started_at`` and used nothing). Each run carries its
outcome, and every row counts its runs per outcome.

The signal: location-based average grid carbon intensity (gCO2e/kWh) of the region the run ran in, from the
configured carbon provider (not marginal emissions, not market-based). Per run:

- energy: the fleet template's facility power (scheduling/catalog.py: the instance's draw at 50 % load x
  AWS's PUE) x the run's measured runtime;
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
- saving = baseline - chosen; saving % = saving / baseline.

Audit: a forecast figure (``carbon_chosen_g``, ``carbon_earliest_g``) recomputes from the plan's audit
record, ``GET /v1/runs/{id}/plan`` (``services/plan_audit.py``): the series the plan used, the runtime and the
power (README "The plan's audit record").

Forecast vs actuals: a run **rests on actuals** when both its chosen and its baseline figures are measured;
all its figures (kWh, chosen, baseline, saving) then go to the ``*_actual`` columns, those of every other
run (a forecast, a climatology or an estimate from them in at least one of the two) to ``*_forecast``.
Each pair adds up exactly to its total column. When no run rests on actuals the report says why.

Exactness: each run's figures are rounded once to integer milligrams (energy to integer mWh) and every sum is
an integer sum, so the rows add up exactly to the total and the total to the runs; JSON, CSV and the chart
show the same integers divided by 1000 (10^6 for kWh), and the chart's text uses the same display strings
(``display``: the figures in one unit, g, kg or t, chosen for the whole report) as the JSON.

CSV cells are neutralised against formula injection (OWASP): a text cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import JobTemplate, RecurringJob, Run
from scheduling.catalog import AWS_PUE, fleet_power_kw, get_fleet_template
from scheduling.chart import fmt_mass, fmt_pct, mass_unit

# every outcome of a run that consumed compute (a CANCELLED run counts when it had started)
RAN = ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED")
SIGNAL = (
    "location-based average grid carbon intensity (gCO2e/kWh) of the region each run ran in, "
    "from the configured carbon provider"
)
SCOPE = (
    "this client's runs that started in [from, to) and ended, of every outcome that consumed compute "
    "(SUCCEEDED, FAILED, TIMED_OUT, and CANCELLED while running); compute energy only (the fleet's "
    "instances at 50 % load x PUE), no embodied emissions, no network or storage"
)
BASELINE = (
    "the same run started at its window's earliest start (a one-off run's intended time) in its home "
    "region; measured over that interval where actuals exist, else the plan's forecast scaled to the "
    "real runtime"
)
BASELINE_SHORT = "the window's earliest start in the home region, same runtime"
POWER_MODEL = (
    "facility power = the instance type's draw at 50 % CPU load (Cloud Carbon Footprint coefficients, "
    f"scheduling/catalog.py) x PUE {AWS_PUE}; energy = power x measured runtime"
)
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
    # added with issue 20 (after the original columns, so positional readers keep working)
    "saving_pct",
    "runs_on_forecast",
    "runs_by_outcome",
    "from",
    "to",
    "unit",
    "emissions_chosen",
    "emissions_baseline",
    "saving",
]
RUN_CSV_COLUMNS = [
    "run_id",
    "outcome",
    "started_at",
    "finished_at",
    "runtime_sec",
    "region",
    "job_template_id",
    "template_name",
    "recurring_job_id",
    "recurring_job_label",
    "fleet_template_id",
    "power_kw",
    "pue",
    "energy_kwh",
    "emissions_chosen_g",
    "chosen_basis",
    "emissions_baseline_g",
    "baseline_basis",
    "saving_g",
    "saving_pct",
    "rests_on",
    "provider",
    "power_model",
    "baseline_definition",
]


@dataclass(slots=True)
class RunFigures:
    """One run's ledger figures in integer units (mWh, mg), with what they rest on."""

    run_id: str
    template_id: str
    recurring_job_id: str | None
    month: str
    energy_mwh: int
    chosen_mg: int
    baseline_mg: int
    actual: bool  # both the chosen and the baseline figure are measured
    region: str = ""  # issue 14: where it ran ("" for runs planned before regions were recorded)
    outcome: str = "SUCCEEDED"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime_sec: float = 0.0
    fleet_template_id: str = ""
    power_kw: float = 0.0
    chosen_basis: str = "forecast"  # measured | estimate | forecast | none
    baseline_basis: str = "forecast"  # measured | forecast | forecast (scaled) | none (= chosen)
    provider: str = ""
    actual_note: str | None = None
    actual_checked: bool = False

    @property
    def saving_mg(self) -> int:
        return self.baseline_mg - self.chosen_mg


def _pct(saving_mg: int, baseline_mg: int) -> float | None:
    """Saving in % of the baseline (2 decimals), None without a baseline."""
    if baseline_mg <= 0:
        return None
    value = round(saving_mg * 100 / baseline_mg, 2)
    return value + 0.0 if value != 0 else 0.0  # never -0.0


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
    outcomes: Counter = field(default_factory=Counter)

    def add(self, f: RunFigures) -> None:
        self.runs += 1
        self.outcomes[f.outcome] += 1
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

    @property
    def saving_pct(self) -> float | None:
        return _pct(self.saving_mg, self.baseline_mg)

    def display(self, unit: str) -> dict[str, str]:
        """The figures as a person reads them, in the report's one unit (the chart shows these strings)."""
        pct = self.saving_pct
        saving = fmt_mass(self.saving_mg / 1000, unit)
        return {
            "emissions_chosen": fmt_mass(self.chosen_mg / 1000, unit),
            "emissions_baseline": fmt_mass(self.baseline_mg / 1000, unit),
            "saving": saving,
            "saving_pct": fmt_pct(pct) if pct is not None else "n/a",
            "energy": f"{self.energy_mwh / 1_000_000:,.3f} kWh",
        }

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
            "saving_pct": self.saving_pct,
            "runs_on_forecast": self.runs - self.runs_with_actuals,
            "runs_by_outcome": dict(sorted(self.outcomes.items())),
        }


@dataclass
class Ledger:
    rows: list[Totals]
    total: Totals
    runs: list[RunFigures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    group_by: str = "month"
    unit: str = "g"
    actuals_reason: str | None = None
    template_names: dict[str, str] = field(default_factory=dict)
    recurring_labels: dict[str, str] = field(default_factory=dict)

    @property
    def period(self) -> str:
        if self.start is None or self.end is None:
            return ""

        def day(t: datetime) -> str:
            t = t.astimezone(UTC)
            return f"{t:%Y-%m-%d}" if (t.hour, t.minute, t.second) == (0, 0, 0) else f"{t:%Y-%m-%d %H:%M}Z"

        return f"{day(self.start)} to {day(self.end)}"


def _mg(grams: float | None) -> int:
    return int(round((grams or 0.0) * 1000))


RUN_COLUMNS = (
    "id",
    "job_template_id",
    "recurring_job_id",
    "fleet_template_id",
    "status",
    "started_at",
    "finished_at",
    "runtime_sec",
    "region",
    "carbon_chosen_g",
    "carbon_earliest_g",
    "carbon_realised_g",
    "carbon_actual_g",
    "carbon_actual_baseline_g",
    "carbon_actual_source",
    "carbon_actual_note",
    "carbon_actual_checked_at",
)


@lru_cache(maxsize=256)
def _power_kw(fleet_template_id: str) -> float:
    ft = get_fleet_template(fleet_template_id)
    return fleet_power_kw(ft) if ft is not None else 0.0


@lru_cache(maxsize=256)
def _power_model(fleet_template_id: str) -> str:
    """The power model of one run, short: the instance's draw at 50 % load and the PUE."""
    ft = get_fleet_template(fleet_template_id)
    if ft is None:
        return "unknown fleet template: 0 kW"
    return f"{ft.watts_50:g} W at 50 % load x PUE {AWS_PUE} ({ft.power_source})"


def _forecast_source(provider: str) -> str:
    """What a run without measured figures rests on: the configured provider's forecast."""
    return f"{provider} (forecast; configured provider)" if provider else "forecast"


def _figures(values: tuple, provider: str) -> RunFigures:
    """One run's figures from its RUN_COLUMNS values and the plan's p50 (seconds), in that order (a plain
    tuple: 10,000 runs cost a fraction of what attribute access on ORM objects or rows would)."""
    (
        run_id, template_id, recurring_job_id, fleet_template_id, status, started_at, finished_at,
        runtime_sec, region, chosen_g, earliest_g, realised_g, actual_g, actual_baseline_g, actual_source,
        actual_note, actual_checked_at, p50,
    ) = values  # fmt: skip
    power = _power_kw(fleet_template_id)
    runtime = float(runtime_sec or 0.0)
    energy_mwh = int(round(power * runtime / 3600.0 * 1_000_000))
    measured = actual_g is not None
    # the chosen figure: measured, else the estimate over the real interval, else the plan's forecast
    chosen = actual_g if measured else realised_g
    chosen_basis = "measured" if measured else "estimate"
    real_interval = chosen is not None  # the figure covers the runtime that really happened
    if chosen is None:
        chosen = chosen_g
        chosen_basis = "forecast" if chosen is not None else "none"
    baseline: float | None
    if actual_baseline_g is not None:
        baseline, baseline_measured, baseline_basis = actual_baseline_g, True, "measured"
    elif earliest_g is not None:
        baseline, baseline_measured, baseline_basis = earliest_g, False, "forecast"
        if real_interval and p50 and runtime:
            # the baseline was forecast for the planned runtime (p50): scale it to the runtime that really
            # happened, which the chosen figure covers
            baseline = earliest_g * runtime / float(p50)
            baseline_basis = "forecast (scaled to the real runtime)"
    else:
        # no baseline: saving 0, on the chosen figure's basis
        baseline, baseline_measured, baseline_basis = chosen, measured, "none (= chosen)"
    return RunFigures(
        run_id,
        template_id,
        recurring_job_id,
        f"{started_at.year:04d}-{started_at.month:02d}" if started_at else "",
        energy_mwh,
        _mg(chosen),
        _mg(baseline),
        measured and baseline_measured,
        region or "",
        status,
        started_at,
        finished_at,
        runtime,
        fleet_template_id,
        power,
        chosen_basis,
        baseline_basis,
        actual_source or provider,
        actual_note,
        actual_checked_at is not None,
    )


def recurring_labels(session: Session, ids: set[str]) -> dict[str, str]:
    """A label per recurring job: its name, else its calendar; made distinct with the id's end when two
    jobs would read the same (two unnamed jobs with the same cron)."""
    rows = list(
        session.execute(
            select(RecurringJob.id, RecurringJob.name, RecurringJob.cron, RecurringJob.interval).where(
                RecurringJob.id.in_(ids)
            )
        )
    )
    base = {
        rid: name or (f"cron {cron}" if cron else f"every {interval}") for rid, name, cron, interval in rows
    }
    seen = Counter(base.values())
    return {rid: (f"{label} ({rid})" if seen[label] > 1 else label) for rid, label in base.items()}


def _actuals_reason(figures: list[RunFigures], actuals_days: int | None) -> str | None:
    """Why no run rests on actuals (None when some do, or when there are no runs)."""
    if not figures or any(f.actual for f in figures):
        return None
    checked = [f for f in figures if f.actual_checked]
    unchecked = len(figures) - len(checked)
    parts = []
    if unchecked:
        days = f"{actuals_days} days" if actuals_days else "ORCH_CARBON_ACTUALS_DAYS"
        parts.append(
            f"{unchecked} run(s) not checked for actuals yet (the record_carbon_actuals maintenance task "
            f"looks at runs that finished in the last {days}; providers publish actuals with a delay)"
        )
    half = [f for f in checked if f.chosen_basis == "measured"]
    if half:
        parts.append(f"{len(half)} run(s) measured at the chosen start but not over the baseline interval")
    notes = Counter((f.actual_note or "no measured intensity").split(";")[0].strip() for f in checked)
    if len(checked) > len(half):
        top, n = notes.most_common(1)[0]
        parts.append(f"{len(checked) - len(half)} run(s) checked without a measurement (e.g. {n}: {top})")
    return "no run rests on actuals: " + "; ".join(parts)


def carbon_ledger(
    session: Session,
    client_id: str,
    start: datetime,
    end: datetime,
    group_by: str,
    provider: str = "",
    actuals_days: int | None = None,
) -> Ledger:
    # plain rows of the columns the figures need (no ORM objects: 10,000 runs in well under a second)
    runs = list(
        session.execute(
            select(
                *(getattr(Run, c) for c in RUN_COLUMNS),
                Run.plan["p50_sec"].as_float().label("p50_sec"),  # not the whole plan document
            )
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
    source = _forecast_source(provider)
    figures = [_figures(tuple(r), source) for r in runs]
    tpl_ids = {f.template_id for f in figures}
    template_names = dict(
        session.execute(select(JobTemplate.id, JobTemplate.name).where(JobTemplate.id.in_(tpl_ids))).all()
    )
    rec_labels = recurring_labels(session, {f.recurring_job_id for f in figures if f.recurring_job_id})
    labels: dict[str, str] = {}
    if group_by == "template":
        seen = Counter(template_names.values())
        labels = {k: (f"{v} ({k})" if seen[v] > 1 else v) for k, v in template_names.items()}
    elif group_by == "recurring_job":
        labels = dict(rec_labels)
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
    missing = sum(1 for f in figures if f.chosen_basis == "none")
    if missing:
        notes.append(f"{missing} run(s) have no carbon estimate and count 0 g")
    unknown_power = sum(1 for f in figures if f.power_kw == 0.0)
    if unknown_power:
        notes.append(f"{unknown_power} run(s) on a fleet template without a power figure count 0 kWh")
    reason = _actuals_reason(figures, actuals_days)
    if reason:
        notes.append(reason)
    # one unit for the whole report, the one the rows read best in (a total of 3.03 t over 12 months of
    # about 250 kg each reads "3,030 kg")
    rows = [groups[k] for k in sorted(groups)]
    unit = mass_unit(max((max(abs(r.baseline_mg), abs(r.chosen_mg)) for r in rows), default=0) / 1000)
    return Ledger(
        rows=rows,
        total=total,
        runs=figures,
        notes=notes,
        start=start,
        end=end,
        group_by=group_by,
        unit=unit,
        actuals_reason=reason,
        template_names=template_names,
        recurring_labels=rec_labels,
    )


def methodology() -> dict[str, str]:
    return {"signal": SIGNAL, "scope": SCOPE, "baseline": BASELINE, "power_model": POWER_MODEL}


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run (OWASP CSV injection): text starting with = + - @, a tab or a
    CR gets a leading apostrophe. Numbers stay numbers (a negative saving is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if isinstance(value, float):
        return _plain(value)
    return value


def _plain(x: float) -> str:
    """A float as plain decimals (``0.000015``, never ``1.5e-05``): the report's figures have at most 6
    decimals (mWh, mg), so this reads back as the same float."""
    text = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _write_csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: safe_cell(v) for k, v in row.items()})
    return buf.getvalue()


def row_csv_dict(ledger: Ledger, row: Totals) -> dict:
    d = row.as_dict()
    disp = row.display(ledger.unit)
    d |= {
        "saving_pct": "" if d["saving_pct"] is None else d["saving_pct"],
        "runs_by_outcome": " ".join(f"{k}:{v}" for k, v in d["runs_by_outcome"].items()),
        "from": ledger.start.isoformat() if ledger.start else "",
        "to": ledger.end.isoformat() if ledger.end else "",
        "unit": ledger.unit,
        "emissions_chosen": disp["emissions_chosen"],
        "emissions_baseline": disp["emissions_baseline"],
        "saving": disp["saving"],
    }
    return d


def ledger_csv(ledger: Ledger) -> str:
    return _write_csv(CSV_COLUMNS, [row_csv_dict(ledger, r) for r in [*ledger.rows, ledger.total]])


def run_dict(ledger: Ledger, f: RunFigures) -> dict:
    """One run's line of the per-run export, with the methodology it rests on."""
    pct = _pct(f.saving_mg, f.baseline_mg)
    return {
        "run_id": f.run_id,
        "outcome": f.outcome,
        "started_at": f.started_at.isoformat() if f.started_at else None,
        "finished_at": f.finished_at.isoformat() if f.finished_at else None,
        "runtime_sec": f.runtime_sec,
        "region": f.region,
        "job_template_id": f.template_id,
        "template_name": ledger.template_names.get(f.template_id, ""),
        "recurring_job_id": f.recurring_job_id or "",
        "recurring_job_label": ledger.recurring_labels.get(f.recurring_job_id or "", ""),
        "fleet_template_id": f.fleet_template_id,
        "power_kw": round(f.power_kw, 6),
        "pue": AWS_PUE,
        "energy_kwh": f.energy_mwh / 1_000_000,
        "emissions_chosen_g": f.chosen_mg / 1000,
        "chosen_basis": f.chosen_basis,
        "emissions_baseline_g": f.baseline_mg / 1000,
        "baseline_basis": f.baseline_basis,
        "saving_g": f.saving_mg / 1000,
        "saving_pct": pct,
        "rests_on": "actuals" if f.actual else "forecast",
        "provider": f.provider,
        "power_model": _power_model(f.fleet_template_id),
        "baseline_definition": BASELINE_SHORT,
    }


def runs_csv(ledger: Ledger) -> str:
    """The per-run export as CSV (RUN_CSV_COLUMNS; empty cells for nulls, text neutralised)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RUN_CSV_COLUMNS)
    for f in ledger.runs:
        d = run_dict(ledger, f)
        w.writerow(["" if v is None else safe_cell(v) for v in (d[c] for c in RUN_CSV_COLUMNS)])
    return buf.getvalue()


def ledger_svg(ledger: Ledger) -> str:
    """The report as a bar chart: baseline vs chosen emissions per row, in the report's unit; its title,
    subtitle and row labels are the JSON's display strings (scheduling/chart.py ``ledger_chart_svg``)."""
    from scheduling.chart import LedgerBar, ledger_chart_svg

    t = ledger.total
    disp = t.display(ledger.unit)
    if t.runs:
        title = (
            f"Carbon ledger {ledger.period}: saved {disp['saving']} CO2e ({disp['saving_pct']}) "
            f"of {disp['emissions_baseline']}"
        )
    else:
        title = f"Carbon ledger {ledger.period}: no runs in this period"
    subtitle = (
        f"{t.runs} run(s) by {ledger.group_by.replace('_', ' ')}; "
        f"{t.runs_with_actuals} on actuals, {t.runs - t.runs_with_actuals} on forecasts; "
        "signal: location-based average grid intensity"
    )
    bars = [
        LedgerBar(
            label=r.label or r.key or "-",
            baseline_g=r.baseline_mg / 1000,
            chosen_g=r.chosen_mg / 1000,
            baseline_text=r.display(ledger.unit)["emissions_baseline"],
            chosen_text=r.display(ledger.unit)["emissions_chosen"],
            saving_text=f"{r.display(ledger.unit)['saving']} ({r.display(ledger.unit)['saving_pct']})",
        )
        for r in ledger.rows
    ]
    return ledger_chart_svg(bars, ledger.unit, title, subtitle, ledger.actuals_reason)
