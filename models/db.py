"""SQLAlchemy tables. Times are timezone-aware UTC (SQLite returns naive ones: see UTCDateTime)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Stores UTC; always returns aware UTC datetimes (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque, unguessable id: ``<prefix>_<20 url-safe chars>``."""
    return f"{prefix}_{secrets.token_hex(10)}"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    key_rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    # AWS settings (PUT /v1/clients/{id}/aws)
    role_arn: Mapped[str | None] = mapped_column(String(2048), default=None)
    external_id: Mapped[str | None] = mapped_column(String(1224), unique=True, default=None)
    region_default: Mapped[str | None] = mapped_column(String(32), default=None)
    session_name_template: Mapped[str | None] = mapped_column(String(128), default=None)
    subnet_ids: Mapped[list[Any] | None] = mapped_column(default=None)
    security_group_ids: Mapped[list[Any] | None] = mapped_column(default=None)
    instance_profile_arn: Mapped[str | None] = mapped_column(String(2048), default=None)
    # issue 14: where the client's work may run (NULL: only the home region) and each region's launch
    # settings {region: {"subnet_ids": [...], "security_group_ids": [...], "instance_profile_arn": ...}}
    allowed_regions: Mapped[list[Any] | None] = mapped_column(default=None)
    region_settings: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    aws_updated_at: Mapped[datetime | None] = mapped_column(default=None)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (Index("uq_artifact_client_name_version", "client_id", "name", "version", unique=True),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    entry_point: Mapped[str] = mapped_column(String(16))
    s3_bucket: Mapped[str] = mapped_column(String(63))
    s3_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobTemplate(Base):
    __tablename__ = "job_templates"
    __table_args__ = (Index("uq_template_client_name", "client_id", "name", unique=True),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    app_artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    default_args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_uri: Mapped[str | None] = mapped_column(String(2048), default=None)
    fleet_template_id: Mapped[str] = mapped_column(String(64))
    expected_runtime_sec: Mapped[int | None] = mapped_column(Integer, default=None)
    max_runtime_sec: Mapped[int | None] = mapped_column(Integer, default=None)
    region: Mapped[str | None] = mapped_column(String(32), default=None)
    # issue 14: narrows the client's allowed regions (NULL: no narrowing); the region of data_uri
    regions: Mapped[list[Any] | None] = mapped_column(default=None)
    data_region: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # issue 19 (NULL: no retries)
    # issue 19: the row holds the CURRENT version (PATCH makes a new one, each kept in
    # job_template_versions); a retired template (DELETE) stays readable but takes no new use
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


# the fields a template version fixes (what a run is planned and launched with)
TEMPLATE_VERSION_FIELDS = (
    "name",
    "app_artifact_id",
    "default_args",
    "data_uri",
    "fleet_template_id",
    "expected_runtime_sec",
    "max_runtime_sec",
    "region",
    "regions",
    "data_region",
    "retry_policy",
)


class JobTemplateVersion(Base):
    """One version of a job template (issue 19): a copy of its fields as they were; runs reference
    (job_template_id, job_template_version) and keep the version they were planned with."""

    __tablename__ = "job_template_versions"
    job_template_id: Mapped[str] = mapped_column(ForeignKey("job_templates.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    app_artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    default_args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_uri: Mapped[str | None] = mapped_column(String(2048), default=None)
    fleet_template_id: Mapped[str] = mapped_column(String(64))
    expected_runtime_sec: Mapped[int | None] = mapped_column(Integer, default=None)
    max_runtime_sec: Mapped[int | None] = mapped_column(Integer, default=None)
    region: Mapped[str | None] = mapped_column(String(32), default=None)
    regions: Mapped[list[Any] | None] = mapped_column(default=None)
    data_region: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # issue 19


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("uq_job_idempotency", "client_id", "idempotency_key", unique=True),
        Index("uq_job_recurring_nominal", "recurring_job_id", "nominal_time", unique=True),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    job_template_id: Mapped[str] = mapped_column(ForeignKey("job_templates.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    intended_time: Mapped[datetime | None] = mapped_column(default=None)
    earliest_start: Mapped[datetime | None] = mapped_column(default=None)
    latest_finish: Mapped[datetime | None] = mapped_column(default=None)
    risk_mode: Mapped[str] = mapped_column(String(16))
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # recurring jobs (issue 13): the firing that made this job; unique per (recurring job, nominal time)
    recurring_job_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    nominal_time: Mapped[datetime | None] = mapped_column(default=None)
    regions: Mapped[list[Any] | None] = mapped_column(default=None)  # issue 14: narrows the template's
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(
        default=None
    )  # issue 19: overrides template's
    job_template_version: Mapped[int | None] = mapped_column(Integer, default=None)  # issue 19 (NULL: 1)
    rerun_of: Mapped[str | None] = mapped_column(String(40), default=None)  # issue 19: the run it reruns


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_client_status", "client_id", "status"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    job_template_id: Mapped[str] = mapped_column(String(40), index=True)
    fleet_template_id: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    planned_start: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    capacity: Mapped[str | None] = mapped_column(String(16), default=None)
    fleet: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # last FleetHandle + instance ids
    plan: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    runtime_sec: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_chosen_g: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_earliest_g: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_realised_g: Mapped[float | None] = mapped_column(Float, default=None)
    recurring_job_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)  # issue 13
    region: Mapped[str | None] = mapped_column(String(32), default=None)  # issue 14: chosen when planned
    job_template_version: Mapped[int | None] = mapped_column(Integer, default=None)  # issue 19 (NULL: 1)
    # measured carbon, recorded after the run by the record_carbon_actuals maintenance task (issue 13):
    # gCO2e over [started_at, finished_at] and over the baseline interval from measured intensity only
    # (never a forecast or climatology), the run's mean measured g/kWh, who measured it, and when it was
    # last looked for (with why not, while a figure is missing)
    carbon_actual_g: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_actual_baseline_g: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_actual_intensity: Mapped[float | None] = mapped_column(Float, default=None)
    carbon_actual_source: Mapped[str | None] = mapped_column(String(255), default=None)
    carbon_actual_note: Mapped[str | None] = mapped_column(Text, default=None)
    carbon_actual_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    # issue 19: one record per attempt {attempt, state, exit_code, started_at, finished_at, reason, capacity}
    attempt_log: Mapped[list[Any] | None] = mapped_column(default=None)


class RecurringJob(Base):
    """A recurring job (issue 13): one Temporal Schedule ``recurring-<id>``; each firing makes one job + run.
    Deleted ones stay (status "deleted") so their past runs keep a readable recurring_job_id."""

    __tablename__ = "recurring_jobs"
    __table_args__ = (Index("ix_recurring_client_status", "client_id", "status"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    job_template_id: Mapped[str] = mapped_column(ForeignKey("job_templates.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(100), default=None)
    cron: Mapped[str | None] = mapped_column(String(255), default=None)
    interval: Mapped[str | None] = mapped_column(String(64), default=None)  # ISO 8601 duration
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    margin_before: Mapped[str] = mapped_column(String(64), default="PT0S")
    margin_after: Mapped[str] = mapped_column(String(64), default="PT0S")
    deadline: Mapped[str | None] = mapped_column(String(64), default=None)
    risk_mode: Mapped[str] = mapped_column(String(16), default="NEUTRAL")
    weights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    start_at: Mapped[datetime | None] = mapped_column(default=None)
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    catchup_window: Mapped[str] = mapped_column(String(64), default="PT1H")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused | deleted
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    schedule_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class CarbonCache(Base):
    __tablename__ = "carbon_cache"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column()


class WebhookEndpoint(Base):
    """A client's webhook endpoint (issue 19). ``secret`` signs the payloads (HMAC-SHA256), so it must be
    recoverable: it is stored encrypted with the deployment's ``ORCH_SECRETS_KEY`` (``enc:v1:...``,
    core/secretbox.py; README "Webhooks") and never returned after creation."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    secret: Mapped[str] = mapped_column(String(512))  # enc:v1:<Fernet token> (core/secretbox.py)
    enabled: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: created in the same transaction as the run change that caused it
    (unique per endpoint + event id), delivered by ``WebhookDeliveryWorkflow``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("uq_delivery_endpoint_event", "endpoint_id", "event_id", unique=True),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(40), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(40), default=None)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class PlanAudit(Base):
    """The audit record of one plan of a run (issue 18): everything the plan was decided from (forecast
    series at decision time, provider, runtime model, power, candidates, the rule's figures), as
    zlib-compressed JSON (``services/plan_audit.py``). The run's ``plan["audit_id"]`` names the record in
    force; ``adopted`` marks earlier plans the run also followed (a re-plan that moved it). Deleted with
    the run."""

    __tablename__ = "plan_audits"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    decided_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    adopted: Mapped[bool] = mapped_column(Boolean, default=False)
    size_bytes: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class ForecastPair(Base):
    """One hour of a live forecast a plan used, paired with the intensity measured for it (issue 18):
    the forecast's measured skill per (provider, zone) and lead time (``services/skill.py``)."""

    __tablename__ = "carbon_forecast_pairs"
    __table_args__ = (
        Index("uq_forecast_pair", "run_id", "provider", "zone", "at", unique=True),
        Index("ix_forecast_pair_key", "provider", "zone", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(64))
    signal: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column()  # start of the hour
    lead_h: Mapped[float] = mapped_column(Float)  # hours from the forecast's issue to the hour's middle
    forecast: Mapped[float] = mapped_column(Float)  # g/kWh, as the plan saw it
    actual: Mapped[float] = mapped_column(Float)  # g/kWh, measured
    stated_sigma: Mapped[float] = mapped_column(Float)  # g/kWh, the 1-sigma the plan used
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
