"""Where a job may run (README "Choosing the region"): the home region and the regions the planner may
choose from. Minimal version for the planner; the full one (with validation) lands with the regions
branch."""

from __future__ import annotations

from typing import Any

__all__ = ["candidate_regions", "home_region"]


def home_region(template: Any, client: Any) -> str:
    return template.region or (client.region_default if client else None) or "us-east-1"


def candidate_regions(client: Any, template: Any, job_regions: list[str] | None) -> list[str]:
    home = home_region(template, client)
    allowed = list(getattr(client, "allowed_regions", None) or [home])
    if getattr(template, "regions", None):
        allowed = [r for r in allowed if r in template.regions]
    data_region = getattr(template, "data_region", None)
    if data_region and job_regions is None:
        return [data_region]
    if job_regions is not None:
        allowed = [r for r in allowed if r in job_regions]
    out = ([home] if home in allowed else []) + [r for r in allowed if r != home]
    if not out:
        raise ValueError("no region is allowed for this job")
    return out
