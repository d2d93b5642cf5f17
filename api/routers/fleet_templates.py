"""Fleet templates: the built-in EC2 instance-type catalog (power, size, spot interruption bins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep
from api.errors import NotFound
from models.api import FleetTemplateOut, Page
from scheduling.catalog import FleetTemplate, get_fleet_template, list_fleet_templates

router = APIRouter(prefix="/v1/fleet-templates", tags=["fleet-templates"])


def fleet_out(t: FleetTemplate) -> FleetTemplateOut:
    return FleetTemplateOut(
        id=t.id,
        vcpu=t.vcpu,
        memory_gib=t.memory_gib,
        watts_50=t.watts_50,
        power_source=t.power_source,
        spot_bins=dict(t.spot_bins),
        spot_savings_pct=dict(t.spot_savings_pct),
    )


@router.get(
    "", response_model=Page[FleetTemplateOut], summary="List instance types (filter by family prefix)"
)
def list_templates(
    _: PrincipalDep,
    prefix: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64, description="last id of the previous page")] = None,
) -> Page[FleetTemplateOut]:
    items = [
        t
        for t in list_fleet_templates()
        if (not prefix or t.id.startswith(prefix)) and (not cursor or t.id > cursor)
    ]
    page = items[:limit]
    nxt = page[-1].id if len(items) > limit else None
    return Page[FleetTemplateOut](items=[fleet_out(t) for t in page], next_cursor=nxt)


@router.get("/{fleet_template_id}", response_model=FleetTemplateOut)
def get_template(fleet_template_id: str, _: PrincipalDep) -> FleetTemplateOut:
    t = get_fleet_template(fleet_template_id)
    if t is None:
        raise NotFound(f"fleet template {fleet_template_id} not found; GET /v1/fleet-templates lists them")
    return fleet_out(t)
