"""Pydantic request/response schemas of the REST API (the seed contract plus what users expect)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from models.domain import TERMINAL_STATUSES, JobType, RiskMode, RunStatus
from models.workflow import RUN_EVENT_TYPES

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# EC2 instance types are lower case ("m5.large"); AWS refuses "M5.Large": input is normalised before storing.
InstanceType = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64)
]
Scalar = str | int | float | bool | None
MAX_ARGS = 100
MAX_REGIONS = 40
# An AWS region name ("eu-west-3"); which names are known is checked by the services (core.aws_validation)
RegionName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
SubnetId = Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")]
SecurityGroupId = Annotated[str, StringConstraints(pattern=r"^sg-[0-9a-f]{8,17}$")]
T = TypeVar("T")
ARG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """A JSON body may escape half of a UTF-16 pair (``"\\ud800"``): Python keeps it as a lone surrogate,
    which is no Unicode text: no UTF-8 encoder (PostgreSQL, an app's argv) accepts it."""
    if isinstance(value, str):
        return bool(_LONE_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, and so are NUL (U+0000) and lone surrogates (an escaped
    half of a UTF-16 pair) in any text: PostgreSQL cannot store them, no app can be given them, and no
    name, id or argument needs them. The error names the field."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("text must not contain NUL (U+0000) characters")
        if _has_lone_surrogate(value):
            raise ValueError("text must not contain lone surrogates (U+D800..U+DFFF): not valid Unicode")
        return value


# What an app is given must fit the kernel's limits of execve(), or it can never start (E2BIG): each
# argument and each environment string at most MAX_ARG_STRLEN bytes with its NUL (Linux: 32 pages, 128 KiB),
# all of them together well within ARG_MAX (2 MiB with the usual 8 MiB stack; the worker's own variables
# and the command take the rest). Drivers pass the args twice: as ``--key=value`` arguments and as the JSON
# in ``ORCH_ARGS`` (fleets.contract, whose output tests/fleets checks against these sums).
MAX_ARG_STRLEN = 128 * 1024
MAX_ARGS_TOTAL_BYTES = 1024 * 1024


def arg_string(key: str, value: Any) -> str:
    """The app's argument for one arg, as fleets.contract.app_argv builds it."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def args_launch_problem(args: dict[str, Any]) -> str | None:
    """Why the app could never be started with these args (too big for execve), or None."""
    env = len(("ORCH_ARGS=" + json.dumps(args, sort_keys=True)).encode()) + 1
    if env > MAX_ARG_STRLEN:
        return (
            f"the args take {env} bytes as the app's ORCH_ARGS variable (JSON, non-ASCII escaped), more than "
            f"the {MAX_ARG_STRLEN} bytes the OS passes in one variable"
        )
    total = env
    for key in sorted(args):
        n = len(arg_string(key, args[key]).encode()) + 1
        if n > MAX_ARG_STRLEN:
            return f"arg {key!r} takes {n} bytes as --{key}=..., more than the OS's {MAX_ARG_STRLEN} per arg"
        total += n
    if total > MAX_ARGS_TOTAL_BYTES:
        return f"the args take {total} bytes as arguments and ORCH_ARGS, more than {MAX_ARGS_TOTAL_BYTES}"
    return None


def _check_args(v: dict[str, Any] | None) -> dict[str, Any] | None:
    """Args are a flat object of scalars with simple keys (they become ``--key=value`` argv and the JSON in
    ``ORCH_ARGS``), small enough that the OS can pass them to the app."""
    if v is None:
        return v
    if len(v) > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} args")
    for k, val in v.items():
        if not ARG_KEY_RE.match(k):
            raise ValueError(f"arg name {k!r} must match {ARG_KEY_RE.pattern}")
        if isinstance(val, dict | list):
            raise ValueError(
                f"arg {k!r} must be a scalar (string, number, boolean or null), not a {type(val).__name__}"
            )
        if isinstance(val, str) and len(val) > 4096:
            raise ValueError(f"arg {k!r} is longer than 4096 characters")
        if isinstance(val, str) and _has_lone_surrogate(val):
            raise ValueError(f"arg {k!r} contains a lone surrogate (U+D800..U+DFFF): it is not valid Unicode")
    if problem := args_launch_problem(v):
        raise ValueError(problem)
    return v


# ---------- clients ----------
class ClientStatus(StrEnum):
    active = "active"
    suspended = "suspended"


class ClientCreate(Strict):
    name: Name


class ClientCreated(BaseModel):
    id: str
    api_key: str = Field(description="The raw API key. Shown once: only a hash is stored.")
    status: ClientStatus
    name: str


class ClientOut(BaseModel):
    id: str
    name: str
    status: ClientStatus
    api_key_prefix: str = Field(description="First characters of the key, to tell keys apart")
    created_at: datetime
    key_rotated_at: datetime | None = None
    aws_configured: bool


class ClientPatch(Strict):
    status: ClientStatus | None = None
    name: Name | None = None


class RegionSettingsIn(Strict):
    """Launch settings of one region (the same rules as the top-level fields)."""

    subnet_ids: list[SubnetId] = Field(default_factory=list, max_length=16)
    security_group_ids: list[SecurityGroupId] = Field(default_factory=list, max_length=16)
    instance_profile_arn: str | None = Field(
        None, max_length=2048, description="Default: the top-level instance_profile_arn (IAM is global)"
    )


class AwsSettingsIn(Strict):
    role_arn: str = Field(max_length=2048, examples=["arn:aws:iam::123456789012:role/orchestrator"])
    external_id: str | None = Field(
        None,
        min_length=2,
        max_length=1224,
        pattern=r"^[\w+=,.@:/-]+$",
        description="Omit it and a strong one is generated (recommended: confused-deputy protection).",
    )
    region_default: str = Field(examples=["us-east-1"])
    session_name_template: str = Field("orch-{client_id}", max_length=128)
    subnet_ids: list[SubnetId] = Field(
        default_factory=list, max_length=16, description="Launch subnets in the home region"
    )
    security_group_ids: list[SecurityGroupId] = Field(
        default_factory=list, max_length=16, description="Security groups in the home region"
    )
    instance_profile_arn: str | None = Field(None, max_length=2048)
    allowed_regions: list[RegionName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_REGIONS,
        description="Where this client's runs may go (data residency): known AWS region names, each once, "
        "and it must include region_default. Omit it (null) and runs stay in their home region (the "
        "template's region, else region_default): nothing moves unless the client opts in.",
        examples=[["eu-central-1", "eu-west-3"]],
    )
    region_settings: dict[RegionName, RegionSettingsIn] | None = Field(
        None,
        max_length=MAX_REGIONS,
        description="Launch settings per region (subnets and security groups are regional in AWS); keys "
        "must be allowed regions. A region without an entry launches in its default VPC, except the home "
        "region, which uses the top-level subnet_ids / security_group_ids.",
    )


class RegionSettingsOut(BaseModel):
    subnet_ids: list[str] = []
    security_group_ids: list[str] = []
    instance_profile_arn: str | None = None


class AwsSettingsOut(BaseModel):
    client_id: str
    role_arn: str
    external_id: str
    region_default: str
    session_name_template: str
    subnet_ids: list[str] = []
    security_group_ids: list[str] = []
    instance_profile_arn: str | None = None
    allowed_regions: list[str] | None = Field(
        None, description="null: runs stay in their home region (the template's region, else region_default)"
    )
    region_settings: dict[str, RegionSettingsOut] | None = None
    updated_at: datetime | None = None


class RegionOfferingOut(BaseModel):
    region: str
    ok: bool = Field(description="Every instance type of the client's templates is offered here")
    not_offered: list[str] = Field(
        [], description="Instance types of the client's templates the account is not offered in this region"
    )
    error_code: str | None = None
    message: str | None = None
    hint: str | None = None


class AwsVerifyOut(BaseModel):
    ok: bool = Field(description="The role could be assumed and the permission probes passed")
    account: str | None = None
    arn: str | None = None
    error_code: str | None = None
    message: str | None = None
    hint: str | None = None
    regions: list[RegionOfferingOut] | None = Field(
        None,
        description="When ok: per region the client's runs may go to (allowed_regions, else the home "
        "regions), the instance types of its templates that EC2 DescribeInstanceTypeOfferings does not "
        "list there",
    )


# ---------- artifacts ----------
class ArtifactOut(BaseModel):
    artifact_id: str
    s3_uri: str
    sha256: str
    version: str
    name: str
    size_bytes: int
    entry_point: str
    created_at: datetime


# ---------- fleet templates ----------
class FleetTemplateOut(BaseModel):
    id: str
    vcpu: int
    memory_gib: float
    watts_50: float = Field(description="Instance power at 50% load (W)")
    power_source: str
    spot_bins: dict[str, int] = Field(
        description="Region -> AWS Spot Advisor interruption bin (0: <5% .. 4: >20%)"
    )
    spot_savings_pct: dict[str, int] = {}


# ---------- retries (issue 19) ----------
class RetryPolicyIn(Strict):
    """Retries of failed app attempts (a non-zero exit). A spot interruption is not a failure: it relaunches
    on-demand regardless. A retry never starts when it could not finish (p50) before latest_finish."""

    max_attempts: int = Field(3, ge=1, le=20, description="Attempts in all, the first included (1: none)")
    initial_interval_sec: float = Field(10.0, ge=0, le=86400, description="Backoff before the 1st retry (s)")
    backoff_coefficient: float = Field(2.0, ge=1, le=10, description="Each backoff is this times the last")
    max_interval_sec: float = Field(600.0, ge=0, le=7 * 86400, description="Longest backoff (s)")
    retryable_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] | None = Field(
        None, max_length=64, description="Exit codes that are retried; omit: every non-zero exit code"
    )
    replan: bool = Field(
        False,
        description="RESCHEDULABLE only: after the backoff, re-plan (same region) and move the retry to a "
        "cleaner start within the window when the planner finds one that still finishes in time",
    )


class AttemptOut(BaseModel):
    attempt: int
    state: str = Field(description="RUNNING, SUCCEEDED, FAILED, INTERRUPTED, or the run's final status")
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    capacity: str | None = None
    log_url: str = Field(description="This attempt's log: GET /v1/runs/{id}/logs?attempt=N")


# ---------- job templates ----------
class JobTemplateCreate(Strict):
    name: Name
    app_artifact_id: str = Field(min_length=1, max_length=40)
    default_args: dict[str, Scalar] = Field(default_factory=dict)
    data_uri: str | None = Field(
        None, max_length=2048, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    )
    fleet_template_id: InstanceType = Field(
        description="EC2 instance type from GET /v1/fleet-templates (normalised to lower case)"
    )
    expected_runtime_sec: int | None = Field(None, gt=0, le=30 * 86400)
    max_runtime_sec: int | None = Field(
        None, gt=0, le=30 * 86400, description="Hard limit: stop and TIMED_OUT"
    )
    region: str | None = Field(
        None,
        description="Home region of the template's runs (the baseline of savings); default: the client's "
        "region_default. Must be one of the client's allowed_regions when the client declared them.",
    )
    regions: list[RegionName] | None = Field(
        None,
        min_length=1,
        max_length=MAX_REGIONS,
        description="Narrow the client's allowed_regions for this template's runs (a subset of them; "
        "known regions, each once). Omit it: no narrowing.",
    )
    data_region: RegionName | None = Field(
        None,
        description="Region of data_uri. A run of this template stays there unless the job itself lists "
        "regions. Must be allowed (and among regions when set).",
    )
    retry_policy: RetryPolicyIn | None = Field(
        None, description="Retries of failed attempts for this template's runs (a job may override it)"
    )

    _args = field_validator("default_args")(_check_args)


class JobTemplatePatch(Strict):
    """Any field of a template (same rules as on create); the result is validated as a whole and stored as a
    new version. Jobs and runs planned before keep the version they were planned with."""

    name: Name | None = None
    app_artifact_id: str | None = Field(None, min_length=1, max_length=40)
    default_args: dict[str, Scalar] | None = None
    data_uri: str | None = Field(
        None, max_length=2048, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    )
    fleet_template_id: InstanceType | None = None
    expected_runtime_sec: int | None = Field(None, gt=0, le=30 * 86400)
    max_runtime_sec: int | None = Field(None, gt=0, le=30 * 86400)
    region: str | None = None
    regions: list[RegionName] | None = Field(None, min_length=1, max_length=MAX_REGIONS)
    data_region: RegionName | None = None
    retry_policy: RetryPolicyIn | None = Field(
        None, description="Retries of failed attempts (null: none); the whole policy is replaced"
    )

    _args = field_validator("default_args")(_check_args)


class _TemplateFields(BaseModel):
    """What a template version holds (shared by the template and its versions)."""

    name: str
    app_artifact_id: str
    default_args: dict[str, Any]
    data_uri: str | None
    fleet_template_id: str
    expected_runtime_sec: int | None
    max_runtime_sec: int | None
    region: str | None
    regions: list[str] | None = None
    data_region: str | None = None
    retry_policy: dict[str, Any] | None = None
    created_at: datetime


class JobTemplateOut(_TemplateFields):
    id: str
    version: int = Field(1, description="The current version (PATCH makes a new one)")
    updated_at: datetime | None = Field(None, description="When the current version was made")
    status: str = Field("active", description="active, or retired (DELETE): readable, takes no new use")
    retired_at: datetime | None = None


class JobTemplateVersionOut(_TemplateFields):
    """One version of a template, as it was made."""

    job_template_id: str
    version: int


class RerunIn(Strict):
    """Optional: the rerun's times. Default: a ONE_TIME job now; a RESCHEDULABLE job's window of the same
    length starting now."""

    intended_time: AwareDatetime | None = Field(None, description="ONE_TIME: when (default now)")
    earliest_start: AwareDatetime | None = Field(
        None, description="RESCHEDULABLE: the new window's start (default now; its length is kept)"
    )


# ---------- jobs ----------
RiskModeIn = RiskMode  # former name, kept importable


class WeightsIn(Strict):
    carbon: float = Field(0.5, ge=0, le=1000)
    risk: float = Field(0.4, ge=0, le=1000)
    slack: float = Field(0.1, ge=0, le=1000)

    @model_validator(mode="after")
    def _positive_sum(self) -> WeightsIn:
        if self.carbon + self.risk + self.slack <= 0:
            raise ValueError("weights must have a positive sum")
        return self


JOB_REGIONS_FIELD: dict[str, Any] = dict(
    min_length=1,
    max_length=MAX_REGIONS,
    description="Regions this job may run in: a subset of the template's regions (else of the client's "
    "allowed_regions); known regions, each once. Omit it to use the template's (a template with a "
    "data_region then stays there).",
    examples=[["eu-central-1", "eu-west-3"]],
)


class JobCreate(Strict):
    job_template_id: str = Field(min_length=1, max_length=40)
    type: JobType
    intended_time: AwareDatetime | None = Field(
        None, description="ONE_TIME: when to start (UTC offset required)"
    )
    earliest_start: AwareDatetime | None = None
    latest_finish: AwareDatetime | None = None
    risk_mode: RiskMode = RiskMode.NEUTRAL
    weights: WeightsIn = Field(default_factory=WeightsIn)
    args: dict[str, Scalar] | None = Field(None, description="Override the template's default_args")
    regions: list[RegionName] | None = Field(None, **JOB_REGIONS_FIELD)
    retry_policy: RetryPolicyIn | None = Field(
        None, description="Override the template's retry policy for this job (max_attempts 1: no retries)"
    )

    _args = field_validator("args")(_check_args)

    @model_validator(mode="after")
    def _by_type(self) -> JobCreate:
        if self.type == JobType.ONE_TIME:
            if self.intended_time is None:
                raise ValueError("ONE_TIME jobs need intended_time")
            if self.earliest_start is not None:
                raise ValueError("ONE_TIME jobs take intended_time, not earliest_start")
            if self.latest_finish is not None and self.latest_finish <= self.intended_time:
                raise ValueError("latest_finish must be after intended_time")
        else:
            if self.earliest_start is None or self.latest_finish is None:
                raise ValueError("RESCHEDULABLE jobs need earliest_start and latest_finish")
            if self.intended_time is not None:
                raise ValueError("RESCHEDULABLE jobs take earliest_start/latest_finish, not intended_time")
            if self.earliest_start >= self.latest_finish:
                raise ValueError("earliest_start must be before latest_finish")
        return self


def window_limit_errors(
    settings,
    now: datetime,
    *,
    intended_time: datetime | None = None,
    earliest_start: datetime | None = None,
    latest_finish: datetime | None = None,
) -> list[dict[str, str]]:
    """The date limits every job and preview input must respect (settings ``ORCH_MAX_WINDOW_DAYS``,
    ``ORCH_MAX_SCHEDULE_AHEAD_DAYS``); one ``{path, message}`` per violation, naming limit and setting.
    Checked before any planning, so extreme datetimes (year 9999) are a 422, never an overflow."""
    ahead = timedelta(days=settings.max_schedule_ahead_days)
    window = timedelta(days=settings.max_window_days)
    errors: list[dict[str, str]] = []

    def err(path: str, message: str) -> None:
        errors.append({"path": path, "message": message})

    try:
        horizon = now + ahead
        past = now - window  # how far back a window (e.g. a preview) may start
        for path, value in (("intended_time", intended_time), ("earliest_start", earliest_start)):
            if value is None:
                continue
            if value > horizon:
                err(
                    path,
                    f"may be at most {settings.max_schedule_ahead_days} days ahead "
                    f"(limit max_schedule_ahead_days, setting ORCH_MAX_SCHEDULE_AHEAD_DAYS)",
                )
            elif path == "earliest_start" and value < past:
                err(
                    path,
                    f"may be at most {settings.max_window_days} days in the past "
                    f"(limit max_window_days, setting ORCH_MAX_WINDOW_DAYS)",
                )
        start = earliest_start if earliest_start is not None else intended_time
        if latest_finish is not None and start is not None and not errors and latest_finish - start > window:
            err(
                "latest_finish",
                f"the window may be at most {settings.max_window_days} days long "
                f"(limit max_window_days, setting ORCH_MAX_WINDOW_DAYS)",
            )
    except OverflowError:
        err("body", "a datetime is out of the supported range")
    return errors


class JobCreated(BaseModel):
    job_id: str
    run_id: str
    workflow_id: str
    status: str


class JobOut(BaseModel):
    id: str
    job_template_id: str
    type: JobType
    intended_time: datetime | None
    earliest_start: datetime | None
    latest_finish: datetime | None
    risk_mode: str
    weights: dict[str, float]
    args: dict[str, Any]
    created_at: datetime
    run_ids: list[str]
    regions: list[str] | None = None
    retry_policy: dict[str, Any] | None = None
    job_template_version: int | None = Field(None, description="The template version it was planned with")
    rerun_of: str | None = Field(None, description="The run this job reruns (POST /v1/runs/{id}/rerun)")


# ---------- schedules / predictions ----------
class PreviewRequest(Strict):
    job_template_id: str = Field(min_length=1, max_length=40)
    fleet_template_id: InstanceType | None = Field(None, description="Default: the template's")
    earliest_start: AwareDatetime
    latest_finish: AwareDatetime
    risk_mode: RiskMode = RiskMode.NEUTRAL
    weights: WeightsIn = Field(default_factory=WeightsIn)
    regions: list[RegionName] | None = Field(None, **JOB_REGIONS_FIELD)

    @model_validator(mode="after")
    def _window(self) -> PreviewRequest:
        if self.earliest_start >= self.latest_finish:
            raise ValueError("earliest_start must be before latest_finish")
        return self  # the window length and date limits are settings: window_limit_errors()


class Scores(BaseModel):
    carbon: float
    risk: float
    slack: float


class CandidateOut(BaseModel):
    proposed_start: datetime
    estimated_finish_p50: datetime
    estimated_finish_p90: datetime
    scores: Scores
    objective: float
    estimated_gco2e: float = Field(description="Estimated emissions of a run starting here (gCO2e)")
    saving_vs_earliest_pct: float = Field(
        description="Emission saving against starting at earliest_start (%)"
    )
    expected_saving_pct: float | None = Field(
        None, description="Expected emission saving against the baseline start (%), as forecast"
    )
    saving_sigma_pct: float | None = Field(
        None, description="1-sigma uncertainty of expected_saving_pct (percentage points)"
    )
    prob_saving: float | None = Field(None, description="P(saving > 0) under the forecast's uncertainty")
    expected_lost_run_gco2e: float | None = Field(
        None, description="Spot only: expected gCO2e of a partial run lost to an interruption"
    )
    region: str | None = Field(None, description="The AWS region this candidate runs in")
    paired_days: int | None = Field(
        None,
        description="History-based forecast (embedded): comparable history days this start was judged on "
        "(the same UTC times on the days nearest the plan date, README 'How a start is chosen')",
    )
    paired_days_saved: int | None = Field(
        None, description="Of paired_days, the days on which this start emitted less than the baseline start"
    )
    paired_mean_saving_pct: float | None = Field(
        None, description="Mean of the daily savings against the baseline start over paired_days (%)"
    )


class PreviewOut(BaseModel):
    candidates: list[CandidateOut]
    chosen: CandidateOut
    rationale: str
    capacity: str
    baseline: CandidateOut = Field(description="Starting at earliest_start")
    feasible_count: int
    total_count: int
    skill_gated: bool = Field(
        False, description="A start looked better but the forecast's skill did not justify moving"
    )
    decision_rule: dict[str, Any] | None = Field(
        None,
        description="The rule that allowed moves: 'paired' (history-based forecast: thresholds on the mean "
        "daily saving, the share of days saved and its t, the zone's skill and why) or 'forecast' (minimum "
        "expected saving and P(saving > 0))",
    )
    home_region: str | None = Field(
        None, description="The template's region, else the client's region_default: the baseline's region"
    )
    regions: list[str] = Field(
        default_factory=list,
        description="The regions the plan could choose from (the client's allowed_regions narrowed by the "
        "template's and the request's regions, minus those where the fleet template's instance type is "
        "not offered)",
    )
    home_best: CandidateOut | None = Field(
        None,
        description="With several regions: the start the home region alone would get, for comparison",
    )


class PredictionOut(BaseModel):
    available: bool
    p50_sec: float | None = None
    p90_sec: float | None = None
    confidence: float | None = None
    sample_size: int | None = None
    notes: str | None = None


# ---------- runs ----------
TERMINAL: frozenset[RunStatus] = frozenset(RunStatus(s) for s in TERMINAL_STATUSES)  # former name


class CarbonOut(BaseModel):
    estimated_gco2e_chosen: float | None = Field(None, description="At the chosen start (gCO2e)")
    estimated_gco2e_earliest: float | None = Field(None, description="Had it started at earliest_start")
    saved_pct: float | None = None
    expected_saving_pct: float | None = Field(None, description="Forecast saving at planning time (%)")
    saving_sigma_pct: float | None = Field(None, description="Its 1-sigma uncertainty (points)")
    realised_gco2e: float | None = Field(None, description="Estimate for the time it really ran")
    measured_gco2e: float | None = Field(
        None,
        description="Measured after the run (record_carbon_actuals): gCO2e over the time it really ran, from "
        "measured intensity only; null until a source published actuals",
    )
    measured_gco2e_baseline: float | None = Field(
        None, description="Measured gCO2e of the baseline interval in the home region, from the same source"
    )
    measured_intensity: float | None = Field(None, description="The run's mean measured g/kWh")
    measured_source: str | None = Field(None, description="Who measured it")


class RunOut(BaseModel):
    run_id: str
    job_id: str
    workflow_id: str
    job_template_id: str
    fleet_template_id: str
    status: RunStatus
    status_reason: str | None
    plan: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    planned_start: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    exit_code: int | None
    capacity: str | None
    fleet: dict[str, Any] | None
    runtime_sec: float | None
    carbon: CarbonOut
    recurring_job_id: str | None = Field(None, description="The recurring job whose firing made this run")
    region: str | None = Field(
        None,
        description="The AWS region chosen for the run when it was planned (fixed once it launched); null "
        "before planning and for runs planned before regions were recorded",
    )
    attempt_history: list[AttemptOut] = Field(
        default_factory=list,
        description="Every attempt that ran: number, state, exit code, times, reason, log (issue 19; empty "
        "for runs recorded before it)",
    )
    job_template_version: int | None = Field(
        None, description="The template version the run was planned with (kept when the template changes)"
    )


class CancelIn(Strict):
    reason: str | None = Field(None, max_length=500)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= to get the next page")


class LogsOut(BaseModel):
    run_id: str
    attempt: int
    text: str


# ---------- webhooks (issue 19) ----------
WebhookEventType = Literal[
    "run.scheduled",
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "run.expired",
    "run.retrying",
    "run.deadline_at_risk",
]
WEBHOOK_URL_DESCRIPTION = (
    "https URL to a public address (http://127.0.0.1 or http://[::1] only when the server allows it: "
    "ORCH_WEBHOOK_ALLOW_HTTP_LOOPBACK, on in dev and tests); never a private, loopback, link-local or cloud "
    "metadata address (checked again at each delivery after resolving the name)"
)


class WebhookCreate(Strict):
    url: str = Field(min_length=8, max_length=2048, description=WEBHOOK_URL_DESCRIPTION)
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: cast(list[WebhookEventType], list(RUN_EVENT_TYPES)),
        min_length=1,
        max_length=8,
        description='The events to receive (README "Webhooks": the event list); default: all of them',
    )
    description: str | None = Field(None, max_length=500)


class WebhookPatch(Strict):
    url: str | None = Field(None, min_length=8, max_length=2048, description=WEBHOOK_URL_DESCRIPTION)
    event_types: list[WebhookEventType] | None = Field(None, min_length=1, max_length=8)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(None, description="false: no new deliveries (events are not recorded)")


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Signs every payload (HMAC-SHA256, header Orch-Signature). Shown once, here: store it now"
    )


class DeliveryOut(BaseModel):
    id: str
    event_id: str = Field(description="The event's stable id: the same on every retry and redelivery")
    event_type: str
    run_id: str | None
    status: str = Field(description="pending | delivered | failed")
    attempts: int = Field(description="POSTs made, retries and redeliveries included")
    redeliveries: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
