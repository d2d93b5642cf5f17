"""API schemas of the plan audit trail (``GET /v1/runs/{id}/plan``) and the forecasts' measured skill
(``GET /v1/carbon/skill``), issue 18."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditSeriesOut(BaseModel):
    start: str = Field(description="Start of the first interval (ISO 8601, UTC)")
    step_sec: float = Field(description="Interval length (s); values[i] holds over [start + i*step, +step)")
    values: list[float] | None = Field(description="Forecast intensity (g/kWh) as the plan saw it")
    sigma: list[float] | None = Field(None, description="Its 1-sigma error per interval (g/kWh) as planned")


class AuditRegionOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    region: str | None
    home: bool = Field(description="The home region: the savings baseline")
    selectable: bool = Field(description="The plan could choose it")
    power_kw: float = Field(description="Fleet power there (kW, PUE included): gCO2e = kW x g/kWh x h")
    spot_interruption_prob: float
    provider: str | None = Field(
        description="The carbon source that served the series (ORCH_CARBON_PROVIDER name)"
    )
    zone: str | None = Field(description="The provider's zone for the region")
    signal: str = Field(description="average or marginal")
    live: bool = Field(description="A live provider's forecast (its skill is measured afterwards)")
    issued_at: str | None = Field(description="When the live forecast was fetched: lead times count from it")
    live_until: str | None = Field(description="Where the provider's own data end; spliced beyond")
    fallback_reason: str | None = Field(description="Why the sources before it were skipped")
    sigma_source: str | None = Field(
        None, description="Live forecasts: 'prior' (the provider's documented sigma) or 'measured (N pairs)'"
    )
    series: AuditSeriesOut


class AuditRuntimeOut(BaseModel):
    p50_sec: float
    p90_sec: float
    source: str | None = Field(description="Where p50/p90 came from")


class AuditStoredOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    start: str
    region: str | None
    moved: bool = Field(description="The run followed this plan (a re-plan moves only for a real gain)")
    carbon_chosen_g: float = Field(description="gCO2e at the chosen start, as the run stores it")
    carbon_earliest_g: float | None = Field(
        description="gCO2e at the baseline start, as the run stores it (first plan; null on a re-plan)"
    )
    expected_saving_pct: float = Field(description="The plan's expected saving (%), rounded to 0.01")


class PlanAuditOut(BaseModel):
    """Everything a run's plan was decided from: recompute any candidate's emissions as
    ``power_kw`` x the integral of the region's ``series`` over ``[start, start + runtime.p50_sec]`` (g/kWh x
    h), and the saving as ``(baseline - chosen) / baseline``."""

    model_config = ConfigDict(extra="allow")

    format: int
    audit_id: str
    run_id: str
    decided_at: str = Field(description="When the plan was decided (the workflow's time)")
    kind: str = Field(description="plan (the first) or replan")
    home_region: str
    provider: str | None = Field(description="The home region's carbon source")
    fallback_reason: str | None
    signal: str | None = Field(description="average or marginal")
    window: dict[str, Any]
    job_type: str
    risk_mode: str
    weights: dict[str, Any]
    fleet_template_id: str
    power_kw: float | None = Field(description="Fleet power in the home region (kW)")
    runtime: AuditRuntimeOut
    regions: list[AuditRegionOut]
    chosen: dict[str, Any] = Field(description="The chosen candidate, every figure the planner computed")
    baseline: dict[str, Any] = Field(description="The baseline candidate (not moving)")
    candidates: list[dict[str, Any]] = Field(
        description="The plan's candidates (chosen first) with their figures"
    )
    home_best: dict[str, Any] | None = None
    rationale: str
    rule: dict[str, Any] = Field(description="The decision rule's figures: the gate's policy, counts, flags")
    replan: dict[str, Any] | None = Field(
        description="A re-plan: the current start's figures and the rule for moving"
    )
    stored: AuditStoredOut = Field(description="What the run stores from this plan")
    truncated: str | None = Field(None, description="Set when series were dropped to bound the record")
    earlier: list[dict[str, Any]] = Field(
        default_factory=list, description="Earlier plans the run followed (time, start, region, saving)"
    )


class LeadSkillOut(BaseModel):
    lead_from_h: float
    lead_to_h: float | None = Field(description="null: open-ended")
    pairs: int
    bias: float | None = Field(description="mean(measured - forecast), g/kWh")
    bias_pct: float | None = Field(description="mean((measured - forecast) / forecast), %")
    mae: float | None = Field(description="mean |measured - forecast|, g/kWh")
    measured_sigma_pct: float | None = Field(description="RMS relative error, %")
    coverage_80: float | None = Field(description="Share of pairs inside the stated 80 % interval")
    prior_sigma_pct: float = Field(description="The provider's documented sigma at these lead times, %")
    sigma_pct: float = Field(description="The sigma planning uses at these lead times, %")
    is_prior: bool = Field(description="sigma_pct is the prior alone (too few pairs)")


class SkillOut(BaseModel):
    provider: str
    zone: str
    signal: str
    pairs: int = Field(description="Hourly forecast/measured pairs used (the latest, at most 5000)")
    mae: float | None = Field(description="g/kWh")
    bias: float | None = Field(description="g/kWh, measured - forecast")
    coverage_80: float | None = Field(description="Share of pairs inside the stated 80 % interval")
    is_prior: bool = Field(description="Planning still uses the prior at every lead time")
    by_lead: list[LeadSkillOut]


class SkillListOut(BaseModel):
    items: list[SkillOut]
    method: str = Field(description="How the figures and the sigma in use are computed")
