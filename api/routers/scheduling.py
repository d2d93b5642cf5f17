"""Scheduling preview and runtime predictions (no side effects)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import ClientDep, ServicesDep, SessionDep, owned
from api.errors import Unprocessable, field_error
from core.planning import (
    InfeasibleWindow,
    candidate_doc,
    carbon_series,
    preview_plan,
    region_for,
    runtime_prediction,
)
from models.api import CandidateOut, PredictionOut, PreviewOut, PreviewRequest, window_limit_errors
from models.db import JobTemplate
from scheduling.catalog import get_fleet_template
from scheduling.scoring import Weights

router = APIRouter(tags=["scheduling"])


def _fleet(fleet_template_id: str, path: str = "fleet_template_id") -> str:
    if get_fleet_template(fleet_template_id) is None:
        raise Unprocessable(
            f"unknown fleet template {fleet_template_id!r}",
            [field_error(path, "unknown fleet template; GET /v1/fleet-templates lists them")],
        )
    return fleet_template_id.strip().lower()


@router.post(
    "/v1/schedules/preview",
    response_model=PreviewOut,
    responses={200: {"content": {"image/svg+xml": {}}}},
    summary="Score candidate starts in a window and pick one, exactly as a submitted job would be",
)
def preview(
    body: PreviewRequest,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "svg"], Query(description="svg: chart of the window")] = "json",
):
    limit_errors = window_limit_errors(
        services.settings,
        datetime.now(UTC),
        earliest_start=body.earliest_start,
        latest_finish=body.latest_finish,
    )
    if limit_errors:
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in limit_errors), limit_errors)
    template = owned(session, JobTemplate, body.job_template_id, client, "job template")
    fleet_id = _fleet(body.fleet_template_id or template.fleet_template_id)
    try:
        with services.plan_timer():
            plan = preview_plan(
                session,
                services.settings,
                client,
                template,
                fleet_id,
                body.earliest_start,
                body.latest_finish,
                body.risk_mode.value,
                Weights(**body.weights.model_dump()),
                top_k=100_000 if format == "svg" else 5,  # the chart draws every candidate's score
            )
    except InfeasibleWindow as exc:
        raise Unprocessable(f"infeasible window: {exc}", [field_error("latest_finish", str(exc))]) from exc
    if format == "svg":
        from scheduling.chart import preview_svg

        series, _ = carbon_series(
            services.settings, region_for(template, client), body.earliest_start, body.latest_finish, session
        )
        return Response(
            preview_svg(series, plan, body.earliest_start, body.latest_finish), media_type="image/svg+xml"
        )

    def c(x) -> CandidateOut:
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
    )


@router.get(
    "/v1/predictions/runtime",
    response_model=PredictionOut,
    response_model_exclude_none=True,
    summary="Runtime p50/p90 from this template's SUCCEEDED runs on this fleet template",
)
def predict(
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    job_template_id: Annotated[str, Query(min_length=1, max_length=40)],
    fleet_template_id: Annotated[str | None, Query(max_length=64)] = None,
) -> PredictionOut:
    template = owned(session, JobTemplate, job_template_id, client, "job template")
    fleet_id = _fleet(fleet_template_id or template.fleet_template_id)
    p = runtime_prediction(session, services.settings, template.id, fleet_id)
    if not p.available:
        return PredictionOut(available=False, notes=p.notes or "insufficient history")
    return PredictionOut(
        available=True,
        p50_sec=round(p.p50_sec),
        p90_sec=round(p.p90_sec),
        confidence=round(p.confidence, 2),
        sample_size=p.sample_size,
    )
