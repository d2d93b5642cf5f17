"""Job templates: artifact + default args + data URI + fleet template (application layer).

Templates are versioned (issue 19): the ``job_templates`` row holds the current version, and every version
(the first included) is copied into ``job_template_versions``. ``PATCH`` makes a new version; a job and its
run record the version they were planned with (``job_template_version``) and are planned, launched and
rerun with it (:func:`template_at`). ``DELETE`` retires a template: it stays readable (with its versions,
runs and recurring jobs) but takes no new use (:func:`check_usable`); it is refused while recurring jobs
that are not deleted still use it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.aws_validation import check_region
from models.api import JobTemplateCreate, JobTemplatePatch
from models.db import (
    TEMPLATE_VERSION_FIELDS,
    Artifact,
    Client,
    JobTemplate,
    JobTemplateVersion,
    RecurringJob,
    new_id,
    utcnow,
)
from scheduling.catalog import get_fleet_template
from services.access import owned
from services.errors import Conflict, NotFound, Unprocessable, field_error
from services.pagination import paginate
from services.regions import template_region_errors

_REQUIRED = ("name", "app_artifact_id", "fleet_template_id", "default_args")


def _check(session: Session, client: Client, body: JobTemplateCreate) -> None:
    """Unprocessable for an unknown fleet template or region, a region list the client does not allow
    (``services.regions.template_region_errors``); NotFound for an artifact that is not the client's."""
    owned(session, Artifact, body.app_artifact_id, client, "artifact")
    errors = []
    if get_fleet_template(body.fleet_template_id) is None:
        errors.append(
            field_error(
                "fleet_template_id",
                f"unknown fleet template {body.fleet_template_id!r}; GET /v1/fleet-templates lists them",
            )
        )
    if body.region:
        try:
            check_region(body.region)
        except ValueError as exc:
            errors.append(field_error("region", str(exc)))
    if not any(e["path"] == "region" for e in errors):
        errors += template_region_errors(client, body.region, body.regions, body.data_region)
    if errors:
        raise Unprocessable("; ".join(e["message"] for e in errors), errors)


def _name_taken(session: Session, client: Client, name: str, but: str | None = None) -> bool:
    stmt = select(JobTemplate.id).where(JobTemplate.client_id == client.id, JobTemplate.name == name)
    if but:
        stmt = stmt.where(JobTemplate.id != but)
    return session.scalar(stmt) is not None


def _snapshot(t: JobTemplate) -> JobTemplateVersion:
    return JobTemplateVersion(
        job_template_id=t.id,
        version=t.version,
        created_at=t.updated_at or t.created_at,
        **{f: _copy(getattr(t, f)) for f in TEMPLATE_VERSION_FIELDS},
    )


def _copy(v: Any) -> Any:
    return dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v


def create_template(session: Session, client: Client, body: JobTemplateCreate) -> JobTemplate:
    """Unprocessable for an unknown fleet template or region, a region list the client does not allow
    (``services.regions.template_region_errors``), NotFound for an artifact that is not the
    client's, Conflict for a name the client already uses. Stores version 1."""
    _check(session, client, body)
    t = JobTemplate(
        id=new_id("tpl"),
        client_id=client.id,
        name=body.name,
        app_artifact_id=body.app_artifact_id,
        default_args=dict(body.default_args),
        data_uri=body.data_uri,
        fleet_template_id=body.fleet_template_id,
        expected_runtime_sec=body.expected_runtime_sec,
        max_runtime_sec=body.max_runtime_sec,
        region=body.region,
        regions=list(body.regions) if body.regions is not None else None,
        data_region=body.data_region,
        retry_policy=body.retry_policy.model_dump() if body.retry_policy is not None else None,
        version=1,
        created_at=utcnow(),
    )
    if _name_taken(session, client, body.name):
        raise Conflict(f"a job template named {body.name!r} already exists")
    try:
        session.add(t)
        session.flush()
        session.add(_snapshot(t))
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a job template named {body.name!r} already exists") from exc
    return t


def update_template(
    session: Session, client: Client, template_id: str, patch: JobTemplatePatch
) -> JobTemplate:
    """A new version with ``patch`` applied to the current one (validated as a whole, like a create);
    a patch that changes nothing makes no version. Conflict for a retired template or a taken name."""
    t = owned(session, JobTemplate, template_id, client, "job template")
    if t.retired_at is not None:
        raise Conflict(f"job template {t.id} ({t.name}) is retired: it cannot be changed")
    changes = patch.model_dump(exclude_unset=True)
    nulls = [k for k in _REQUIRED if k in changes and changes[k] is None]
    if nulls:
        raise Unprocessable(
            "; ".join(f"{k} cannot be null" for k in nulls), [field_error(k, "cannot be null") for k in nulls]
        )
    merged = {f: _copy(getattr(t, f)) for f in TEMPLATE_VERSION_FIELDS} | changes
    try:
        body = JobTemplateCreate.model_validate(merged)
    except ValidationError as exc:  # the merged whole breaks a rule a single field could not
        errors = [field_error(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        raise Unprocessable("; ".join(f"{e['path']}: {e['message']}" for e in errors), errors) from exc
    _check(session, client, body)
    new = body.model_dump()
    if all(new[f] == getattr(t, f) for f in TEMPLATE_VERSION_FIELDS):
        return t
    if new["name"] != t.name and _name_taken(session, client, new["name"], but=t.id):
        raise Conflict(f"a job template named {new['name']!r} already exists")
    for f in TEMPLATE_VERSION_FIELDS:
        setattr(t, f, new[f])
    t.version += 1
    t.updated_at = utcnow()
    try:
        session.add(_snapshot(t))
        session.flush()
    except IntegrityError as exc:  # a concurrent PATCH made this version first, or took the name
        # template_id, not t.id: the failed flush rolled the session back and t's attributes are expired
        raise Conflict(f"job template {template_id} was changed concurrently; read it and retry") from exc
    return t


def users(session: Session, template_id: str) -> list[RecurringJob]:
    """The recurring jobs (active or paused) that fire with this template."""
    return list(
        session.scalars(
            select(RecurringJob)
            .where(RecurringJob.job_template_id == template_id, RecurringJob.status != "deleted")
            .order_by(RecurringJob.created_at)
        )
    )


def retire_template(session: Session, client: Client, template_id: str) -> JobTemplate:
    """Retire (DELETE): Conflict naming the recurring jobs that still use it (switch them with
    ``PATCH /v1/recurring-jobs/{id}`` or delete them first). Retiring a retired template changes nothing."""
    t = owned(session, JobTemplate, template_id, client, "job template")
    if t.retired_at is not None:
        return t
    using = users(session, t.id)
    if using:
        names = ", ".join(f"{r.id}" + (f" ({r.name})" if r.name else "") + f" [{r.status}]" for r in using)
        raise Conflict(
            f"job template {t.id} ({t.name}) is used by {len(using)} recurring job(s): {names}; switch them "
            "to another template (PATCH /v1/recurring-jobs/{id} with job_template_id) or delete them first"
        )
    t.retired_at = utcnow()
    session.flush()
    return t


def check_usable(t: JobTemplate, field: str = "job_template_id") -> None:
    """Conflict for a retired template: it takes no new jobs, previews, reruns or recurring jobs."""
    if t.retired_at is not None:
        raise Conflict(
            f"job template {t.id} ({t.name}) was retired at {t.retired_at.isoformat()}: it takes no new "
            f"jobs, previews, reruns or recurring jobs ({field}); its runs stay readable",
            [field_error(field, "retired job template")],
        )


def usable_template(session: Session, client: Client, template_id: str, field: str = "job_template_id"):
    """The client's template (NotFound otherwise) if it is not retired (Conflict otherwise)."""
    t = owned(session, JobTemplate, template_id, client, "job template")
    check_usable(t, field)
    return t


def template_at(session: Session, template_id: str, version: int | None) -> JobTemplate:
    """The template as it was at ``version`` (None: version 1 for rows older than versions, the current
    one when no older copy exists). The current version is the row itself; an older one is a transient
    ``JobTemplate`` (never added to a session) with the version's fields."""
    t = session.get(JobTemplate, template_id)
    if t is None:
        raise NotFound(f"job template {template_id} not found")
    if version is None or version == t.version:
        return t
    v = session.get(JobTemplateVersion, (template_id, version))
    if v is None:
        return t
    old = JobTemplate(
        id=t.id,
        client_id=t.client_id,
        version=v.version,
        created_at=t.created_at,
        updated_at=v.created_at,
        retired_at=t.retired_at,
        **{f: _copy(getattr(v, f)) for f in TEMPLATE_VERSION_FIELDS},
    )
    return old


def list_templates(
    session: Session, client: Client, limit: int, cursor: str | None, include_retired: bool = True
) -> tuple[list[JobTemplate], str | None]:
    stmt = select(JobTemplate).where(JobTemplate.client_id == client.id)
    if not include_retired:
        stmt = stmt.where(JobTemplate.retired_at.is_(None))
    return paginate(session, stmt, JobTemplate, limit, cursor)


def get_template(session: Session, client: Client, template_id: str) -> JobTemplate:
    return owned(session, JobTemplate, template_id, client, "job template")


def list_versions(session: Session, client: Client, template_id: str) -> list[JobTemplateVersion]:
    """Every version of the client's template, newest first."""
    t = owned(session, JobTemplate, template_id, client, "job template")
    return list(
        session.scalars(
            select(JobTemplateVersion)
            .where(JobTemplateVersion.job_template_id == t.id)
            .order_by(JobTemplateVersion.version.desc())
        )
    )
