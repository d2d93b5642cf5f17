"""The live carbon forecasts' measured skill (issue 18): ``GET /v1/carbon/skill`` (``services/skill.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, ServicesDep, SessionDep
from models.audit import SkillListOut, SkillOut
from services.skill import METHOD, skill_table

router = APIRouter(prefix="/v1/carbon", tags=["carbon"])


@router.get(
    "/skill",
    response_model=SkillListOut,
    summary="Measured skill of the live carbon forecasts per provider and zone, by lead time",
)
def carbon_skill(
    principal: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    provider: Annotated[str | None, Query(max_length=64, description="Only this provider")] = None,
    zone: Annotated[str | None, Query(max_length=64, description="Only this zone")] = None,
) -> SkillListOut:
    """For every (provider, zone) whose forecasts the product has used and seen measured: the hourly pairs,
    MAE and bias (g/kWh), coverage of the stated 80 % interval, and per lead-time bucket the sigma
    planning now uses and whether it is still the prior. Forecast errors of the grid, not tenant data:
    every key sees the same table."""
    del principal  # any valid key
    rows = skill_table(session, services.settings, provider, zone)
    return SkillListOut(items=[SkillOut.model_validate(r) for r in rows], method=METHOD)
