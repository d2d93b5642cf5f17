"""Planning (application layer): joins the DB to the pure scheduling model. Loads one planning context (the
template, the client's region, the runtime history, the carbon forecast), plans, and explains (candidate
documents, the preview chart). Used by the plan_schedule activity, job submission (``services.jobs``) and the
API's preview and predictions, so a preview and a real run are planned by exactly the same code."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from carbon.embedded import is_fallback_region
from core.settings import Settings
from models.api import CandidateOut, PreviewOut, window_limit_errors
from models.db import Client, Job, JobTemplate, Run
from models.workflow import PlanResult
from scheduling.carbon import CarbonSeries
from scheduling.catalog import (
    fleet_power_kw,
    get_fleet_template,
    offered_in,
    spot_interruption_probability,
)
from scheduling.prediction import RuntimePrediction, predict_runtime
from scheduling.scoring import (
    Candidate,
    InfeasibleWindow,
    Plan,
    Policy,
    RegionOption,
    RiskMode,
    Weights,
    plan_regions,
)
from services.access import owned
from services.errors import Unprocessable, field_error
from services.regions import candidate_regions, home_region, job_region_errors

__all__ = [
    "InfeasibleWindow",
    "Preview",
    "known_fleet_template",
    "predict_template_runtime",
    "preview",
    "preview_chart",
    "preview_out",
    "audit_record",
    "carbon_series_info",
    "plan_for_run",
    "planning_policy",
    "preview_plan",
    "runtime_prediction",
    "realised_emissions_g",
]

log = logging.getLogger("orch.planning")

NO_HISTORY_P90_FACTOR = 1.5  # without history the spread is a guess: p90 = 1.5 x p50
REPLAN_MIN_GAIN = 0.05  # move a planned start only for >= 5% less carbon ...
REPLAN_MAX_EXTRA_RISK = 0.01  # ... and at most 1 point more deadline risk
HISTORY_LIMIT = 50
RECORD_CANDIDATES = 48  # candidates a run's plan audit record lists (the best by the objective, chosen first)


def planning_policy(settings: Settings) -> Policy:
    """The skill gate, default forecast uncertainty and spot caps from the settings (README
    "How a start is chosen"). A series without ``sigma`` (a provider that gives no uncertainty, or a CSV
    of actuals) is read with ``ORCH_CARBON_DEFAULT_REL_SIGMA`` (default 10 % of the value, the order of a
    day-ahead grid forecast's error); the embedded climatology carries its own, larger sigma."""
    return Policy(
        min_saving_pct=settings.min_saving_pct,
        min_saving_prob=settings.min_saving_prob,
        max_risk_pts_per_saving_pct=settings.max_risk_pts_per_saving_pct,
        default_rel_sigma=settings.carbon_default_rel_sigma,
        neutral_spot_max_prob=settings.spot_max_prob_neutral,
        aggressive_spot_max_prob=settings.spot_max_prob_aggressive,
    )


# Built once (every submission and plan runs it): the last SUCCEEDED runs of one (job, fleet template).
_HISTORY = (
    select(Run.runtime_sec, Run.finished_at)
    .where(
        Run.job_template_id == bindparam("tpl"),
        Run.fleet_template_id == bindparam("fleet"),
        Run.status == "SUCCEEDED",
        Run.runtime_sec.is_not(None),
        Run.runtime_sec > 0,
    )
    .order_by(Run.finished_at.desc())
    .limit(HISTORY_LIMIT)
)


def runtime_prediction(
    session: Session,
    settings: Settings,
    job_template_id: str,
    fleet_template_id: str,
    now: datetime | None = None,
) -> RuntimePrediction:
    """From the last SUCCEEDED runs of this (job template, fleet template); recent runs weigh more."""
    rows = session.execute(_HISTORY, {"tpl": job_template_id, "fleet": fleet_template_id}).all()
    now = now or datetime.now().astimezone()
    durations = [float(r[0] or 0.0) for r in rows]  # the query excludes NULLs; this satisfies the type
    ages = [max(0.0, (now - r[1]).total_seconds()) if r[1] else 0.0 for r in rows]
    return predict_runtime(durations, ages, min_samples=settings.prediction_min_samples)


def _runtime(
    session, settings, template: JobTemplate, fleet_template_id: str
) -> tuple[float, float, list[str]]:
    pred = runtime_prediction(session, settings, template.id, fleet_template_id)
    if pred.available and pred.p50_sec is not None and pred.p90_sec is not None:
        return (
            pred.p50_sec,
            pred.p90_sec,
            [
                f"runtime from {pred.sample_size} past runs "
                f"(p50 {pred.p50_sec:.0f} s, p90 {pred.p90_sec:.0f} s)"
            ],
        )
    p50 = float(template.expected_runtime_sec or settings.default_runtime_sec)
    src = "expected_runtime_sec" if template.expected_runtime_sec else "the default runtime"
    return (
        p50,
        p50 * NO_HISTORY_P90_FACTOR,
        [
            f"not enough runtime history ({_runs(pred.sample_size or 0)} of the "
            f"{settings.prediction_min_samples} needed): using {src} {p50:.0f} s, "
            f"p90 assumed {NO_HISTORY_P90_FACTOR}x"
        ],
    )


def _runs(n: int) -> str:
    return f"{n} successful run" + ("" if n == 1 else "s")


def carbon_series(
    settings: Settings, region: str, start: datetime, end: datetime, session: Session | None = None
) -> tuple[CarbonSeries, list[str]]:
    """Intensity forecast (g/kWh) covering [start, end] on the planning grid, from the configured provider."""
    series, notes, _ = carbon_series_info(settings, region, start, end, session)
    return series, notes


@dataclass(frozen=True)
class SeriesInfo:
    """Where a planning series came from (``carbon.SeriesSource``) and whether its live forecast's sigma
    is the measured one (``services.skill.Calibration``; None for a source that is not live)."""

    source: Any
    calibration: Any = None


def carbon_series_info(
    settings: Settings, region: str, start: datetime, end: datetime, session: Session | None = None
) -> tuple[CarbonSeries, list[str], SeriesInfo]:
    """:func:`carbon_series`, and its source. A live provider's forecast carries the sigma measured from
    the pairs the product has seen (``services.skill.calibrated``; the provider's prior without them)."""
    step = timedelta(minutes=settings.forecast_step_min)
    start = start - timedelta(seconds=start.timestamp() % step.total_seconds())  # align to the grid
    end = end + step
    from carbon import get_series_info
    from services.skill import calibrated

    series, notes, source = get_series_info(region, start, end, step, settings=settings, session=session)
    series, calibration = calibrated(session, settings, series, source)
    return series, list(notes), SeriesInfo(source, calibration)


@dataclass
class PlanInputs:
    """What a plan was decided from, filled by :func:`_plan` for the audit record: the region options
    (series, power, spot probability), each series' source, the window and the policy."""

    options: list[RegionOption] = dataclasses.field(default_factory=list)
    sources: dict[str, SeriesInfo] = dataclasses.field(default_factory=dict)
    earliest: datetime | None = None
    end: datetime | None = None
    policy: Policy | None = None


def _plan(
    session,
    settings,
    template,
    client,
    fleet_template_id: str,
    earliest: datetime,
    latest: datetime | None,
    risk_mode: str,
    weights: Weights,
    fixed_start: bool,
    runtime: tuple[float, float, list[str]] | None = None,
    top_k: int = 5,
    regions: list[str] | None = None,
    home: str | None = None,
    inputs: PlanInputs | None = None,
) -> tuple[Plan, float, float]:
    """Plan over ``regions`` (default: the home region only) with the home region (default
    the template's :func:`~services.regions.home_region`) as the savings baseline. ``inputs``, if given,
    receives what the plan was decided from (for the audit record)."""
    ft = get_fleet_template(fleet_template_id)
    if ft is None:
        raise InfeasibleWindow(f"unknown fleet template {fleet_template_id!r}")
    p50, p90, notes = runtime or _runtime(session, settings, template, fleet_template_id)
    home = home or home_region(template, client)
    regions = regions or [home]
    try:  # the API refuses such dates up front (window_limit_errors); this keeps a 500 out of every path
        end = latest if latest is not None else earliest + timedelta(seconds=p90)
        end = max(end, earliest + timedelta(seconds=p90))
    except OverflowError as exc:
        raise InfeasibleWindow(f"dates out of the supported range near {earliest.isoformat()}") from exc
    sources: dict[str, SeriesInfo] = {}
    options, region_notes = _region_options(session, settings, ft, home, regions, earliest, end, p50, sources)
    if inputs is not None:
        inputs.options, inputs.sources, inputs.earliest, inputs.end = list(options), sources, earliest, end
        inputs.policy = planning_policy(settings)
    plan = plan_regions(
        earliest=earliest,
        latest=latest,
        p50_sec=p50,
        p90_sec=p90,
        options=options,
        risk_mode=RiskMode(risk_mode),
        weights=weights,
        step=timedelta(minutes=settings.forecast_step_min),
        fixed_start=fixed_start,
        notes=notes + region_notes,
        policy=planning_policy(settings),
        top_k=top_k,
    )
    data_region = getattr(template, "data_region", None)
    if data_region and plan.region and plan.region != data_region:
        plan = dataclasses.replace(
            plan,
            rationale=f"{plan.rationale}; the template's data is in {data_region}: running in "
            f"{plan.region} reads it across regions (inter-region transfer is charged per GB and adds "
            "latency)",
        )
    return plan, p50, p90


def _region_options(
    session,
    settings,
    ft,
    home: str,
    regions: list[str],
    earliest: datetime,
    end: datetime,
    p50: float,
    sources: dict[str, SeriesInfo] | None = None,
) -> tuple[list[RegionOption], list[str]]:
    """One planning option per region, home first (the baseline, selectable only when allowed and the
    instance type is offered there), and the notes the rationale carries; ``sources`` receives each
    region's series source."""
    power = fleet_power_kw(ft)
    sources = {} if sources is None else sources
    if regions == [home]:  # the one-region plan, exactly as before regions existed
        series, home_notes, sources[home] = carbon_series_info(settings, home, earliest, end, session)
        return [RegionOption(home, series, power, spot_interruption_probability(ft, home, p50))], home_notes
    options: list[RegionOption] = []
    notes: list[str] = []
    seen: set[str] = set()
    not_offered: list[str] = []
    for region in [home, *(r for r in regions if r != home)]:
        series, carbon_notes, sources[region] = carbon_series_info(settings, region, earliest, end, session)
        offered = offered_in(ft, region) is not False
        if not offered and region in regions:
            not_offered.append(region)
        options.append(
            RegionOption(
                region,
                series,
                power,
                spot_interruption_probability(ft, region, p50),
                selectable=region in regions and offered,
            )
        )
        for n in carbon_notes:
            if n not in seen:
                seen.add(n)
                notes.append(n if region == home else f"{region}: {n}")
    if home not in regions:
        notes.append(f"{home} (home) is the savings baseline but not allowed for this job")
    if not_offered and not any(o.selectable for o in options):
        # the packaged offerings say no allowed region has the type: plan where the job may run, as
        # before offerings were known, and say so (verify checks the account's own offerings)
        options = [dataclasses.replace(o, selectable=o.region in regions) for o in options]
        notes.append(
            f"{ft.id} is not offered in any allowed region according to the packaged Spot Advisor data; "
            "planned anyway (POST /v1/clients/{id}/aws/verify checks the account)"
        )
    elif not_offered:
        notes.append(f"{ft.id} is not offered in {', '.join(not_offered)}: not considered there")
    no_data = [
        o.region
        for o in options
        if o.selectable and o.region and o.region != home and is_fallback_region(o.region)
    ]
    if no_data and any(o.selectable and o.region not in no_data for o in options):
        # a flat average stands for these grids: moving there could claim a saving nobody measured
        options = [
            dataclasses.replace(o, selectable=o.selectable and o.region not in no_data) for o in options
        ]
        notes.append(f"no carbon data for {', '.join(no_data)}: not a region to move to")
    return options, notes


def _pct(x: float) -> float:
    """A percentage to 2 decimals, never -0.0 (float noise below the baseline shows as "-0.0" otherwise)."""
    return round(x, 2) + 0.0


def candidate_doc(c: Candidate) -> dict:
    return {
        "proposed_start": c.start.isoformat(),
        "estimated_finish_p50": c.finish_p50.isoformat(),
        "estimated_finish_p90": c.finish_p90.isoformat(),
        # rounded: the model is not more precise than this, and float noise (7e-14) confuses people
        "scores": {"carbon": round(c.carbon, 4), "risk": round(c.risk, 4), "slack": round(c.slack, 4)},
        "objective": round(c.objective, 6),
        "estimated_gco2e": round(c.emissions_g, 3),
        "saving_vs_earliest_pct": _pct(c.saving_vs_earliest_pct),
        # the same expected saving with its forecast uncertainty ("12 % +- 5 %") and P(saving > 0)
        "expected_saving_pct": _pct(c.saving_vs_earliest_pct),
        "saving_sigma_pct": _pct(c.saving_sigma_pct),
        "prob_saving": round(c.prob_saving, 4),
        "expected_lost_run_gco2e": round(c.lost_run_g, 3),
        **({"region": c.region} if c.region is not None else {}),
        # judged by the paired rule (history-based forecast): the comparable days behind the choice
        **(
            {
                "paired_days": c.paired_days,
                "paired_days_saved": c.paired_days_saved,
                "paired_mean_saving_pct": _pct(c.paired_mean_saving_pct or 0.0),
            }
            if c.paired_days
            else {}
        ),
    }


def preview_out(plan: Plan, home: str) -> PreviewOut:
    """The API's view of a plan (``POST /v1/schedules/preview`` and a recurring job's next firing)."""

    def c(x: Candidate) -> CandidateOut:
        return CandidateOut.model_validate(candidate_doc(x))

    return PreviewOut(
        candidates=[c(x) for x in plan.candidates],
        chosen=c(plan.chosen),
        rationale=plan.rationale,
        capacity=plan.capacity,
        baseline=c(plan.baseline),
        feasible_count=plan.feasible_count,
        total_count=plan.total_count,
        skill_gated=plan.skill_gated,
        decision_rule=plan.decision_rule or None,
        home_region=home,
        regions=list(plan.regions) or [home],
        home_best=c(plan.home_best) if plan.home_best is not None else None,
    )


def preview_plan(
    session: Session,
    settings: Settings,
    client: Client,
    template: JobTemplate,
    fleet_template_id: str,
    earliest: datetime,
    latest: datetime,
    risk_mode: str,
    weights: Weights,
    top_k: int = 5,
    regions: list[str] | None = None,
) -> Plan:
    """The plan a job in this window would get (``top_k`` best candidates; the chart asks for all), over the
    regions the client, the template and ``regions`` (the job's own list, if any) allow."""
    plan, _, _ = _plan(
        session,
        settings,
        template,
        client,
        fleet_template_id,
        earliest,
        latest,
        risk_mode,
        weights,
        fixed_start=False,
        top_k=top_k,
        regions=job_regions(client, template, regions),
    )
    return plan


def job_regions(client: Client, template: JobTemplate, regions: list[str] | None) -> list[str]:
    """The regions a job may be planned in (:func:`services.regions.candidate_regions`), as Unprocessable
    naming ``regions`` when none is left."""
    try:
        return candidate_regions(client, template, regions)
    except ValueError as exc:
        raise Unprocessable(str(exc), [field_error("regions", str(exc))]) from exc


def _latest_start(job: Job, risk_mode: str, p50: float, p90: float, settings: Settings) -> datetime | None:
    if job.latest_finish is None:
        if job.intended_time is not None:
            return job.intended_time + timedelta(seconds=settings.start_tolerance_sec)
        return None
    need = p90 if risk_mode == "CONSERVATIVE" else p50
    return job.latest_finish - timedelta(seconds=need)


def plan_for_run(
    session: Session,
    settings: Settings,
    run: Run,
    job: Job,
    template: JobTemplate,
    client: Client,
    not_before: datetime,
    current_start: datetime | None = None,
    pin_region: bool = False,
    record: bool = True,
) -> PlanResult:
    """Plan (or re-plan) one run. ``not_before`` is the workflow's now: no start is proposed before it.
    ``pin_region``: only the run's recorded region (a retry's re-plan: a launched run stays where it ran).
    ``record``: keep the plan's audit record (``services/plan_audit.py``); its id is the plan's
    ``audit_id``."""
    weights = Weights(**job.weights) if job.weights else Weights()
    runtime = _runtime(session, settings, template, run.fleet_template_id)
    p50, p90, _ = runtime
    inputs = PlanInputs()
    window_start = job.intended_time if job.type == "ONE_TIME" else job.earliest_start
    if window_start is None:
        raise ValueError(f"job {job.id} has no start time")
    plan, _, _ = _plan(
        session,
        settings,
        template,
        client,
        run.fleet_template_id,
        max(window_start, not_before),
        job.latest_finish,
        job.risk_mode,
        weights,
        fixed_start=job.type == "ONE_TIME",  # a ONE_TIME job starts at intended_time, no shifting
        runtime=runtime,
        regions=(
            [run.region]
            if pin_region and run.region
            else candidate_regions(client, template, job.regions)  # NoCandidateRegion fails the run
        ),
        inputs=inputs,
        top_k=RECORD_CANDIDATES if record else 5,  # only the audit record lists them
    )
    moved = True
    current_region = run.region
    current = None
    if current_start is not None and current_start >= not_before:
        current, _, _ = _plan(
            session,
            settings,
            template,
            client,
            run.fleet_template_id,
            current_start,
            job.latest_finish,
            job.risk_mode,
            weights,
            fixed_start=True,
            runtime=runtime,
            regions=[current_region] if current_region else None,
            home=home_region(template, client),
        )
        cur, new = current.chosen, plan.chosen
        moved = (
            new.emissions_g <= cur.emissions_g * (1 - REPLAN_MIN_GAIN)
            and new.risk <= cur.risk + REPLAN_MAX_EXTRA_RISK
        )
    chosen = plan.chosen
    doc = {
        **candidate_doc(chosen),
        "rationale": plan.rationale,
        "skill_gated": plan.skill_gated,
        "decision_rule": plan.decision_rule,
        "capacity": plan.capacity,
        "region": chosen.region,
        "home_region": home_region(template, client),
        "p50_sec": p50,
        "p90_sec": p90,
        "risk_mode": job.risk_mode,
        "planned_at": not_before.isoformat(),
    }
    first_plan = current_start is None
    if record:
        from services.plan_audit import store_record

        stored = {
            "start": chosen.start,
            "region": chosen.region if moved else (current_region or chosen.region),
            "moved": moved,
            "carbon_chosen_g": chosen.emissions_g,
            "carbon_earliest_g": plan.baseline.emissions_g if first_plan else None,
            "expected_saving_pct": doc["expected_saving_pct"],
        }
        try:  # the record documents the plan; a failure to keep it must not stop the run
            with session.begin_nested():
                doc["audit_id"] = store_record(
                    session,
                    run,
                    audit_record(
                        plan, inputs, job, run, template, client, not_before, current_start, runtime, stored,
                        current.chosen if current is not None else None,
                    ),
                    not_before,
                )  # fmt: skip
        except Exception:  # noqa: BLE001
            log.warning("the plan audit record of run %s could not be kept", run.id, exc_info=True)
    return PlanResult(
        start=chosen.start,
        latest_start=_latest_start(job, job.risk_mode, p50, p90, settings),
        p50_sec=p50,
        p90_sec=p90,
        capacity=plan.capacity,
        rationale=plan.rationale,
        moved=moved,
        doc=doc,
        carbon_chosen_g=chosen.emissions_g,
        carbon_earliest_g=plan.baseline.emissions_g if first_plan else None,
        region=chosen.region if moved else (current_region or chosen.region),
    )


def audit_record(
    plan: Plan,
    inputs: PlanInputs,
    job: Job,
    run: Run,
    template: JobTemplate,
    client: Client,
    decided_at: datetime,
    current_start: datetime | None,
    runtime: tuple[float, float, list[str]],
    stored: dict[str, Any],
    current: Candidate | None,
) -> dict[str, Any]:
    """The audit record of one plan (``services/plan_audit.py``): the series and sources of every region,
    the runtime model, the power, every candidate and the rule's figures, generically (every field the
    planner's ``Plan``/``Candidate``/``Policy`` carry), the rationale and what the run stores from it."""
    from services.plan_audit import FORMAT, jsonable

    home = home_region(template, client)
    plan_doc = jsonable(plan)
    regions = []
    for o in inputs.options:
        info = inputs.sources.get(o.region or home)
        src = info.source if info is not None else None
        cal = info.calibration if info is not None else None
        regions.append(
            {
                "region": o.region,
                "home": o.region == home,
                "selectable": o.selectable,
                "power_kw": o.power_kw,
                "spot_interruption_prob": o.spot_interruption_prob,
                "provider": getattr(src, "provider", None),
                "zone": getattr(src, "zone", None),
                "signal": o.series.signal,
                "live": bool(getattr(src, "live", False)),
                "issued_at": jsonable(getattr(src, "issued_at", None)),
                "live_until": jsonable(getattr(src, "live_until", None)),
                "fallback_reason": "; ".join(getattr(src, "fallback", ())) or None,
                "sigma_source": None
                if cal is None
                else ("prior" if cal.is_prior else f"measured ({cal.pairs} pairs)"),
                "series": {
                    "start": o.series.start.isoformat(),
                    "step_sec": o.series.step_sec,
                    "values": jsonable(o.series.values),
                    "sigma": jsonable(o.series.sigma) if o.series.sigma is not None else None,
                },
            }
        )
    home_entry = regions[0] if regions else {}
    p50, p90, runtime_notes = runtime
    return {
        "format": FORMAT,
        "run_id": run.id,
        "decided_at": decided_at.isoformat(),
        "kind": "plan" if current_start is None else "replan",
        "home_region": home,
        "provider": home_entry.get("provider"),
        "fallback_reason": home_entry.get("fallback_reason"),
        "signal": home_entry.get("signal"),
        "window": {
            "earliest": jsonable(inputs.earliest),
            "latest_finish": jsonable(job.latest_finish),
            "series_end": jsonable(inputs.end),
            "not_before": decided_at.isoformat(),
            "current_start": jsonable(current_start),
        },
        "job_type": job.type,
        "risk_mode": job.risk_mode,
        "weights": dict(job.weights or {}),
        "fleet_template_id": run.fleet_template_id,
        "power_kw": home_entry.get("power_kw"),
        "runtime": {"p50_sec": p50, "p90_sec": p90, "source": "; ".join(runtime_notes) or None},
        "regions": regions,
        "chosen": plan_doc.pop("chosen"),
        "baseline": plan_doc.pop("baseline"),
        "candidates": plan_doc.pop("candidates"),
        "home_best": plan_doc.pop("home_best", None),
        "rationale": plan_doc.pop("rationale", plan.rationale),
        "rule": {**plan_doc, "policy": jsonable(inputs.policy)},
        "replan": None
        if current_start is None
        else {
            "current": jsonable(current),
            "moved": stored["moved"],
            "min_gain": REPLAN_MIN_GAIN,
            "max_extra_risk": REPLAN_MAX_EXTRA_RISK,
        },
        "stored": jsonable(stored),
    }


def realised_emissions_g(
    session: Session, settings: Settings, run: Run, started: datetime, finished: datetime
) -> float | None:
    """Estimated gCO2e for the interval the run really occupied its fleet."""
    from services.job_templates import template_at

    template = template_at(session, run.job_template_id, run.job_template_version)
    client = session.get(Client, run.client_id)
    seconds = (finished - started).total_seconds()
    if seconds <= 0:
        return 0.0
    plan, _, _ = _plan(
        session,
        settings,
        template,
        client,
        run.fleet_template_id,
        started,
        None,
        "NEUTRAL",
        Weights(),
        fixed_start=True,
        runtime=(seconds, seconds, []),
        home=run.region or home_region(template, client),
    )
    return plan.chosen.emissions_g


# ---------------------------------------------------------------- the API's preview and predictions
@dataclass
class Preview:
    """A job template's plan for a window, as a submitted job would get it."""

    plan: Plan
    template: JobTemplate
    client: Client
    fleet_template_id: str


def known_fleet_template(fleet_template_id: str, path: str = "fleet_template_id") -> str:
    """The normalised id of a fleet template of the catalog; Unprocessable (naming ``path``) otherwise."""
    if get_fleet_template(fleet_template_id) is None:
        raise Unprocessable(
            f"unknown fleet template {fleet_template_id!r}",
            [field_error(path, "unknown fleet template; GET /v1/fleet-templates lists them")],
        )
    return fleet_template_id.strip().lower()


def preview(
    session: Session,
    settings: Settings,
    client: Client,
    job_template_id: str,
    fleet_template_id: str | None,
    earliest: datetime,
    latest: datetime,
    risk_mode: str,
    weights: Weights,
    top_k: int = 5,
    plan_timer: Callable[[], AbstractContextManager[Any]] | None = None,
    regions: list[str] | None = None,
) -> Preview:
    """Score the candidate starts of [earliest, latest] for the client's template (blocking). Unprocessable
    for dates past the configured limits, an unknown fleet template or an infeasible window."""
    limit_errors = window_limit_errors(
        settings, datetime.now(UTC), earliest_start=earliest, latest_finish=latest
    )
    if limit_errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in limit_errors), limit_errors)
    from services.job_templates import usable_template

    template = usable_template(session, client, job_template_id)
    fleet_id = known_fleet_template(fleet_template_id or template.fleet_template_id)
    region_errors = job_region_errors(client, template, regions)
    if region_errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in region_errors), region_errors)
    try:
        with (plan_timer or contextlib.nullcontext)():
            plan = preview_plan(
                session,
                settings,
                client,
                template,
                fleet_id,
                earliest,
                latest,
                risk_mode,
                weights,
                top_k,
                regions=regions,
            )
    except InfeasibleWindow as exc:
        raise Unprocessable(f"infeasible window: {exc}", [field_error("latest_finish", str(exc))]) from exc
    return Preview(plan=plan, template=template, client=client, fleet_template_id=fleet_id)


def preview_chart(
    session: Session, settings: Settings, p: Preview, earliest: datetime, latest: datetime
) -> bytes:
    """The preview as an SVG chart: the window's carbon forecast and every candidate's score."""
    from scheduling.chart import chart_regions, preview_svg

    home = home_region(p.template, p.client)
    # at most MAX_REGIONS series are read and drawn: the home region, the chosen one, then the best others
    series = {
        r: carbon_series(settings, r, earliest, latest, session)[0] for r in chart_regions(p.plan, home)
    }
    return preview_svg(series, p.plan, earliest, latest, what=p.template.name)


def predict_template_runtime(
    session: Session,
    settings: Settings,
    client: Client,
    job_template_id: str,
    fleet_template_id: str | None,
) -> RuntimePrediction:
    """Runtime p50/p90 of the client's template on a fleet template (its own by default)."""
    template = owned(session, JobTemplate, job_template_id, client, "job template")
    fleet_id = known_fleet_template(fleet_template_id or template.fleet_template_id)
    return runtime_prediction(session, settings, template.id, fleet_id)
