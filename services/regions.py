"""Where a run may go (issue 14): the home region, the regions a planner may choose from, the launch settings
of a region, and the validation rules of every region field (application layer, no I/O: plain values and the
ORM rows passed in).

The sets narrow from the client down to the job:

- the client's ``allowed_regions`` (data residency); NULL means only the home region, so nothing moves
  unless the client opts in;
- a template's ``regions`` (a subset of the client's), and its ``data_region`` (where ``data_uri`` lives): a
  template with a data region runs there unless the job itself lists other regions;
- a job's ``regions`` (a subset of what its template allows).

The home region (the template's ``region``, else the client's ``region_default``, else us-east-1) is the
baseline of every saving and comes first among the candidates whenever it is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.aws_validation import check_known_region
from models.db import Client, JobTemplate
from services.errors import field_error

DEFAULT_REGION = "us-east-1"

__all__ = [
    "DEFAULT_REGION",
    "NoCandidateRegion",
    "allowed_for_client",
    "allowed_for_template",
    "candidate_regions",
    "client_region_errors",
    "home_region",
    "job_region_errors",
    "launch_settings",
    "region_list_errors",
    "template_region_errors",
]


class NoCandidateRegion(ValueError):
    """The client, template and job lists leave no region (e.g. the client dropped a region since)."""


def home_region(template: JobTemplate | None, client: Client | None) -> str:
    """The template's region, else the client's region_default, else us-east-1: where a run goes when it
    may not move, and the baseline region of every saving."""
    return (
        (template.region if template is not None else None)
        or (client.region_default if client is not None else None)
        or DEFAULT_REGION
    )


def allowed_for_client(client: Client | None, template: JobTemplate | None = None) -> list[str]:
    """The client's allowed regions in its order; NULL means only the home region (of ``template`` when
    given, so a template pinned to its own ``region`` keeps running there, as before issue 14)."""
    if client is not None and client.allowed_regions:
        return [str(r) for r in client.allowed_regions]
    return [home_region(template, client)]


def allowed_for_template(client: Client | None, template: JobTemplate) -> list[str]:
    """What a job of ``template`` may list: the client's allowed regions narrowed by ``template.regions``."""
    allowed = allowed_for_client(client, template)
    if template.regions:
        narrow = set(template.regions)
        allowed = [r for r in allowed if r in narrow]
    return allowed


def candidate_regions(
    client: Client | None, template: JobTemplate, job_regions: Sequence[str] | None
) -> list[str]:
    """The regions the planner may choose from: the client's allowed regions (default: the home region) ∩
    ``template.regions`` (if set) ∩ ``job_regions`` (if set), home region first when it is in the set, then
    in the client's order. A template with ``data_region`` gives ``[data_region]`` unless the job lists
    regions itself (data never moves unless the job says so). Raises NoCandidateRegion (a ValueError) when
    nothing is left, e.g. when the client removed a region after the template or job was accepted."""
    home = home_region(template, client)
    allowed = allowed_for_template(client, template)
    if template.data_region and job_regions is None:
        if template.data_region not in allowed:
            raise NoCandidateRegion(
                f"the template's data_region {template.data_region} is no longer among the allowed "
                f"regions {allowed}: list regions on the job or change the template"
            )
        return [template.data_region]
    pool = allowed
    if job_regions is not None:
        wanted = set(job_regions)
        pool = [r for r in allowed if r in wanted]
    if not pool:
        raise NoCandidateRegion(
            f"no region is allowed by the client {allowed_for_client(client, template)}, the template "
            f"{template.regions or 'any'} and the job {list(job_regions) if job_regions else 'any'} at once"
        )
    if home in pool:
        pool = [home] + [r for r in pool if r != home]
    return pool


def launch_settings(client: Client, region: str, home: str) -> dict[str, Any]:
    """The subnets, security groups and instance profile to launch with in ``region``: the client's
    ``region_settings[region]`` when present; else, in the home region, the top-level settings (as before
    issue 14); else no subnet and no security group (the region's default VPC). The instance profile is an
    IAM (global) resource: without a regional one, the top-level profile is used in every region."""
    per_region = (client.region_settings or {}).get(region)
    if per_region is not None:
        return {
            "subnet_ids": list(per_region.get("subnet_ids") or []),
            "security_group_ids": list(per_region.get("security_group_ids") or []),
            "instance_profile_arn": per_region.get("instance_profile_arn") or client.instance_profile_arn,
        }
    if region == home:
        return {
            "subnet_ids": list(client.subnet_ids or []),
            "security_group_ids": list(client.security_group_ids or []),
            "instance_profile_arn": client.instance_profile_arn,
        }
    return {"subnet_ids": [], "security_group_ids": [], "instance_profile_arn": client.instance_profile_arn}


# ---------------------------------------------------------------- validation (one {path, message} per error)
def region_list_errors(path: str, regions: Sequence[str], partition: str | None = None) -> list[dict]:
    """A region list must be non-empty, without duplicates, and name known AWS regions (of ``partition``
    when given: the role's)."""
    errors = []
    if not regions:
        errors.append(field_error(path, "must list at least one region (omit the field for the default)"))
    seen: set[str] = set()
    for i, r in enumerate(regions):
        if r in seen:
            errors.append(field_error(f"{path}/{i}", f"region {r} is listed twice"))
        seen.add(r)
        try:
            check_known_region(r, partition)
        except ValueError as exc:
            errors.append(field_error(f"{path}/{i}", str(exc)))
    return errors


def client_region_errors(
    region_default: str,
    allowed_regions: Sequence[str] | None,
    region_settings: dict[str, Any] | None,
    partition: str | None,
) -> list[dict]:
    """``allowed_regions`` (when given) lists known regions once each and includes ``region_default``;
    ``region_settings`` only names allowed regions (``[region_default]`` when allowed_regions is omitted)."""
    errors = []
    if allowed_regions is not None:
        errors += region_list_errors("allowed_regions", allowed_regions, partition)
        if region_default not in allowed_regions:
            errors.append(field_error("allowed_regions", f"must include region_default ({region_default})"))
    allowed = set(allowed_regions) if allowed_regions is not None else {region_default}
    for region in region_settings or {}:
        if region not in allowed:
            errors.append(
                field_error(
                    f"region_settings/{region}",
                    f"{region} is not an allowed region ({', '.join(sorted(allowed))}); "
                    "add it to allowed_regions first",
                )
            )
    return errors


def template_region_errors(
    client: Client, region: str | None, regions: Sequence[str] | None, data_region: str | None
) -> list[dict]:
    """A new template's ``regions`` must be known, distinct and among the client's allowed regions (without
    ``allowed_regions``: only the template's home region); ``data_region`` must be known and allowed (among
    ``regions`` when set). When the client declared ``allowed_regions``, ``region`` must be one of them."""
    errors = []
    if client.allowed_regions:
        base, where = [str(r) for r in client.allowed_regions], "the client's allowed_regions"
        if region and region not in base:
            errors.append(field_error("region", _not_allowed(region, base, where)))
    else:
        base, where = [region or home_region(None, client)], "the allowed regions (the home region only)"
    if regions is not None:
        list_errors = region_list_errors("regions", regions)
        errors += list_errors
        if not list_errors:
            errors += [
                field_error(f"regions/{i}", _not_allowed(r, base, where))
                for i, r in enumerate(regions)
                if r not in base
            ]
    if data_region is not None:
        try:
            check_known_region(data_region)
        except ValueError as exc:
            errors.append(field_error("data_region", str(exc)))
        else:
            pool, pool_where = (list(regions), "the template's regions") if regions else (base, where)
            if data_region not in pool:
                errors.append(field_error("data_region", _not_allowed(data_region, pool, pool_where)))
    return errors


def job_region_errors(client: Client, template: JobTemplate, regions: Sequence[str] | None) -> list[dict]:
    """A job's ``regions`` must be known, distinct and a subset of what its template allows."""
    if regions is None:
        return []
    errors = region_list_errors("regions", regions)
    if errors:
        return errors
    allowed = allowed_for_template(client, template)
    where = "the template's regions" if template.regions else "the client's allowed_regions"
    for i, r in enumerate(regions):
        if r not in allowed:
            errors.append(field_error(f"regions/{i}", _not_allowed(r, allowed, where)))
    return errors


def _not_allowed(region: str, allowed: Sequence[str], where: str) -> str:
    return f"{region} is not in {where} ({', '.join(allowed)})"
