"""Scheduling preview and runtime predictions (no side effects; ``services.planning``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.charts import chart_gate
from api.deps import ClientDep, ServicesDep, SessionDep
from models.api import PredictionOut, PreviewOut, PreviewRequest
from scheduling.scoring import Weights
from services import planning
from services.regions import home_region

router = APIRouter(tags=["scheduling"])


@router.post(
    "/v1/schedules/preview",
    response_model=PreviewOut,
    responses={
        200: {"content": {"image/svg+xml": {}}},
        429: {"description": "format=svg: this client has enough charts rendering; retry after Retry-After"},
        503: {"description": "format=svg: the API has enough charts rendering; retry after Retry-After"},
    },
    summary="Score candidate starts in a window and pick one, exactly as a submitted job would be",
)
def preview(
    request: Request,
    body: PreviewRequest,
    client: ClientDep,
    session: SessionDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "svg"], Query(description="svg: chart of the window")] = "json",
    top: Annotated[
        int, Query(ge=1, le=100, description="json: how many of the best candidates `candidates` lists")
    ] = 5,
):
    if format == "svg":
        # bounded per client and in all (api/charts.py); planned and drawn in this threadpool thread
        with chart_gate(request).slot(client.id):
            p = _preview(body, client, session, services, top_k=100_000)  # the chart draws every score
            svg = planning.preview_chart(
                session, services.settings, p, body.earliest_start, body.latest_finish
            )
        return Response(svg, media_type="image/svg+xml")
    p = _preview(body, client, session, services, top_k=top)
    return planning.preview_out(p.plan, home_region(p.template, p.client))


def _preview(body: PreviewRequest, client, session, services, top_k: int) -> planning.Preview:
    return planning.preview(
        session,
        services.settings,
        client,
        body.job_template_id,
        body.fleet_template_id,
        body.earliest_start,
        body.latest_finish,
        body.risk_mode.value,
        Weights(**body.weights.model_dump()),
        top_k=top_k,
        plan_timer=services.plan_timer,
        regions=body.regions,
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
    p = planning.predict_template_runtime(
        session, services.settings, client, job_template_id, fleet_template_id
    )
    if not p.available or p.p50_sec is None or p.p90_sec is None:
        return PredictionOut(available=False, notes=p.notes or "insufficient history")
    return PredictionOut(
        available=True,
        p50_sec=round(p.p50_sec),
        p90_sec=round(p.p90_sec),
        confidence=round(p.confidence, 2) if p.confidence is not None else None,
        sample_size=p.sample_size,
    )
