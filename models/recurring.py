"""REST schemas of recurring jobs (``/v1/recurring-jobs``) and the carbon ledger (``/v1/reports/carbon``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from models.api import Name, PreviewOut, RiskModeIn, Scalar, Strict, WeightsIn, _check_args


class OverlapPolicy(StrEnum):
    """What a firing does while the previous firing's run is still in flight (Temporal's overlap policy)."""

    skip = "skip"  # no run for this firing; Temporal counts it as skipped (shown as overlap_skipped)
    buffer_one = "buffer_one"  # start it when the previous run ends (at most one waiting)
    allow_all = "allow_all"  # runs may overlap


class RecurringStatus(StrEnum):
    active = "active"
    paused = "paused"
    deleted = "deleted"


class RecurringJobCreate(Strict):
    job_template_id: str = Field(min_length=1, max_length=40)
    name: Name | None = None
    cron: str | None = Field(
        None, max_length=255, description="5-field cron in time_zone's wall clock, e.g. '0 16 * * *'"
    )
    interval: str | None = Field(None, max_length=64, description="ISO 8601 duration between nominal times")
    time_zone: str = Field("UTC", max_length=64, description="IANA zone of the cron (Europe/London)")
    margin_before: str = Field(
        "PT0S",
        max_length=64,
        description="ISO 8601 duration: the run may start this long before each nominal time",
    )
    margin_after: str = Field(
        "PT0S", max_length=64, description="ISO 8601 duration: ... and must start at most this long after it"
    )
    deadline: str | None = Field(
        None,
        max_length=64,
        description="Instead of margin_after alone: the run must FINISH within this long after the nominal "
        "time (latest start = deadline - runtime). Longer than margin_after.",
    )
    risk_mode: RiskModeIn = RiskModeIn.NEUTRAL
    weights: WeightsIn = Field(default_factory=WeightsIn)
    args: dict[str, Scalar] | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    overlap: OverlapPolicy = OverlapPolicy.skip
    catchup_window: str = Field(
        "PT1H",
        max_length=64,
        description="After downtime (Temporal or workers down), firings missed by less than this still run; "
        "older ones are dropped. At least PT10S.",
    )
    paused: bool = False

    _args = field_validator("args")(classmethod(lambda cls, v: _check_args(v)))


class RecurringJobPatch(Strict):
    """Every field optional; the calendar is re-validated as a whole and the Schedule updated."""

    job_template_id: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        description="Switch to another of your templates (not retired): later firings use its current "
        "version; the Temporal Schedule is rewritten; runs already made keep theirs",
    )
    name: Name | None = None
    cron: str | None = Field(None, max_length=255)
    interval: str | None = Field(None, max_length=64)
    time_zone: str | None = Field(None, max_length=64)
    margin_before: str | None = Field(None, max_length=64)
    margin_after: str | None = Field(None, max_length=64)
    deadline: str | None = Field(None, max_length=64)
    risk_mode: RiskModeIn | None = None
    weights: WeightsIn | None = None
    args: dict[str, Scalar] | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    overlap: OverlapPolicy | None = None
    catchup_window: str | None = Field(None, max_length=64)

    _args = field_validator("args")(classmethod(lambda cls, v: _check_args(v)))


class PauseIn(Strict):
    note: str | None = Field(None, max_length=500)


class ScheduleInfoOut(BaseModel):
    """What Temporal says about the Schedule right now (None fields: Temporal unreachable)."""

    schedule_id: str
    reachable: bool = True
    paused: bool | None = None
    note: str | None = None
    actions_taken: int | None = None
    overlap_skipped: int | None = Field(
        None, description="Firings that created no run because the previous run was still in flight"
    )
    missed_catchup: int | None = Field(None, description="Firings dropped: older than the catch-up window")
    recent_firings: list[datetime] = []
    recent_firing_workflows: list[str] = []
    running_firings: list[str] = []


class NominalOut(BaseModel):
    nominal_time: datetime
    margin_start: datetime
    margin_end: datetime


class RecurringJobOut(BaseModel):
    id: str
    job_template_id: str
    name: str | None = None
    cron: str | None = None
    interval: str | None = None
    time_zone: str
    margin_before: str
    margin_after: str
    deadline: str | None = None
    risk_mode: str
    weights: dict[str, Any]
    args: dict[str, Any]
    start_at: datetime | None = None
    end_at: datetime | None = None
    overlap: OverlapPolicy
    catchup_window: str
    status: RecurringStatus
    status_reason: str | None = None
    schedule_id: str
    summary: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    next: list[NominalOut] = Field(default_factory=list, description="The next nominal times and margins")
    next_preview: PreviewOut | None = Field(
        None, description="Planned start preview of the next firing (same shape as /v1/schedules/preview)"
    )
    next_preview_error: str | None = None
    schedule: ScheduleInfoOut | None = None


class TriggerOut(BaseModel):
    recurring_job_id: str
    triggered_at: datetime
    detail: str


# ---------- carbon ledger ----------
class GroupBy(StrEnum):
    template = "template"
    recurring_job = "recurring_job"
    month = "month"
    region = "region"


class LedgerRow(BaseModel):
    key: str = Field(
        description="template id, recurring job id ('' for one-off jobs), YYYY-MM or AWS region ('' for "
        "runs planned before regions were recorded)"
    )
    label: str
    runs: int
    energy_kwh: float
    emissions_chosen_g: float = Field(
        description="gCO2e at the chosen start: measured where recorded, else the estimate at the run's end, "
        "else the plan's forecast"
    )
    emissions_baseline_g: float = Field(description="gCO2e had each run started at its earliest start")
    saving_g: float
    saving_forecast_g: float = Field(
        description="Part of the saving of runs whose chosen or baseline figure is not measured (forecast)"
    )
    saving_actual_g: float = Field(
        description="Part of the saving of runs whose chosen and baseline figures are both measured"
    )
    runs_with_actuals: int = Field(description="Runs whose chosen and baseline figures are both measured")
    energy_forecast_kwh: float = Field(0.0, description="energy_kwh of the runs that rest on a forecast")
    energy_actual_kwh: float = Field(0.0, description="energy_kwh of the runs that rest on actuals")
    emissions_chosen_forecast_g: float = Field(0.0, description="emissions_chosen_g resting on a forecast")
    emissions_chosen_actual_g: float = Field(0.0, description="emissions_chosen_g resting on actuals")
    emissions_baseline_forecast_g: float = Field(
        0.0, description="emissions_baseline_g resting on a forecast"
    )
    emissions_baseline_actual_g: float = Field(0.0, description="emissions_baseline_g resting on actuals")
    saving_pct: float | None = Field(
        None, description="saving_g in % of emissions_baseline_g (null without a baseline)"
    )
    runs_on_forecast: int = Field(0, description="runs - runs_with_actuals")
    runs_by_outcome: dict[str, int] = Field(
        default_factory=dict,
        description="Runs per outcome: SUCCEEDED, FAILED, TIMED_OUT, CANCELLED (cancelled while running)",
    )
    display: dict[str, str] = Field(
        default_factory=dict,
        description="The figures as a person reads them, in the report's unit (g, kg or t): "
        "emissions_chosen, emissions_baseline, saving, saving_pct, energy; the SVG chart shows these strings",
    )


class LedgerOut(BaseModel):
    client_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    rows: list[LedgerRow]
    total: LedgerRow
    notes: list[str] = []
    period: str = Field("", description="The period covered, [from, to), as text")
    unit: str = Field("g", description="The unit of the display strings: g, kg or t of CO2e")
    signal: str = Field("", description="The carbon signal the figures rest on")
    scope: str = Field("", description="Which runs and which emissions are counted")
    methodology: dict[str, str] = Field(
        default_factory=dict, description="signal, scope, baseline definition, power model (with PUE)"
    )
    actuals_reason: str | None = Field(
        None, description="Why no run rests on actuals (null when some do, or when there are no runs)"
    )

    model_config = {"populate_by_name": True}


class LedgerRunOut(BaseModel):
    """One run of the carbon report with the methodology its figures rest on."""

    run_id: str
    outcome: str = Field(description="SUCCEEDED, FAILED, TIMED_OUT or CANCELLED (cancelled while running)")
    started_at: datetime | None
    finished_at: datetime | None
    runtime_sec: float
    region: str
    job_template_id: str
    template_name: str
    recurring_job_id: str
    recurring_job_label: str
    fleet_template_id: str
    power_kw: float = Field(description="Facility power (kW): the instance's draw at 50 % load x PUE")
    pue: float
    energy_kwh: float
    emissions_chosen_g: float
    chosen_basis: str = Field(
        description="measured | estimate (at the run's end) | forecast (the plan's) | none"
    )
    emissions_baseline_g: float
    baseline_basis: str
    saving_g: float
    saving_pct: float | None
    rests_on: str = Field(description="actuals (chosen and baseline both measured) | forecast")
    provider: str = Field(description="The source of the measured figures, else the configured provider")
    power_model: str
    baseline_definition: str


class LedgerRunsOut(BaseModel):
    client_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    runs: list[LedgerRunOut]
    methodology: dict[str, str] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}
