"""Workflow and activity payloads: one pydantic model per parameter, so fields can be added safely
(new fields must have defaults, or running workflows fail to decode their history)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.domain import Capacity, JobType, RunStatus
from models.fleet import FleetHandle

# ApplicationError types raised by activities and matched by the workflow (one spelling for both sides)
ERR_INFEASIBLE_WINDOW = "InfeasibleWindow"  # plan_schedule: no start can meet the window (not retried)
ERR_FLEET_LAUNCH = "FleetLaunchError"  # launch_fleet: no capacity for this attempt (the workflow relaunches)
ERR_INVALID_LAUNCH_SPEC = "InvalidLaunchSpec"  # launch_fleet: the spec can never launch (not retried)


# issue 19: one patch for the retry policy and the run's webhook events (JobRunWorkflow)
PATCH_RETRIES_WEBHOOKS = "retries-webhooks"

# the events a run emits (webhooks, issue 19)
RUN_EVENT_TYPES = (
    "run.scheduled",
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "run.expired",
    "run.retrying",
    "run.deadline_at_risk",
)
TEST_EVENT_TYPE = "webhook.test"
# the event of each final status (a run stopped at its hard limit, TIMED_OUT, is a run.failed)
TERMINAL_EVENT_TYPES: dict[str, str] = {
    "SUCCEEDED": "run.succeeded",
    "FAILED": "run.failed",
    "TIMED_OUT": "run.failed",
    "CANCELLED": "run.cancelled",
    "EXPIRED": "run.expired",
}


def event_id_for(run_id: str, event_type: str, attempt: int = 0) -> str:
    """The stable id of a run's event: the same for every retry of the activity that records it, every
    replay of the workflow and every (re)delivery, so receivers can drop duplicates by it."""
    digest = hashlib.sha256(f"{run_id}:{event_type}:{attempt}".encode()).hexdigest()[:24]
    return f"evt_{digest}"


def workflow_id_for(run_id: str) -> str:
    """The workflow id of a new run: its run id (``run_<hex>``). Runs created before 2026-11-30 have
    ``run-run_<hex>``; code always reads a run's id from ``Run.workflow_id``, never derives it."""
    return run_id


class RetrySpec(BaseModel):
    """A run's retry policy for failed app attempts (issue 19); spot relaunches are separate."""

    max_attempts: int = 1
    initial_interval_sec: float = 10.0
    backoff_coefficient: float = 2.0
    max_interval_sec: float = 600.0
    retryable_exit_codes: list[int] | None = Field(None, description="None: every non-zero exit code")
    replan: bool = Field(False, description="A retry may move to a cleaner start within the window")

    def delay_sec(self, failures: int) -> float:
        """Backoff before the retry that follows the ``failures``-th failed attempt."""
        return min(
            self.initial_interval_sec * self.backoff_coefficient ** (failures - 1), self.max_interval_sec
        )

    def retryable(self, exit_code: int | None) -> bool:
        if self.retryable_exit_codes is None:
            return exit_code != 0
        return exit_code is not None and exit_code in self.retryable_exit_codes


class RunEvent(BaseModel):
    """A webhook event of a run, recorded by the activity that records the change that caused it."""

    event_id: str
    type: str
    attempt: int = 0
    data: dict[str, Any] = Field(default_factory=dict)


class RunInput(BaseModel):
    """What JobRunWorkflow reads; everything else about the run is loaded by its activities from the DB.

    Histories recorded before the trim carry more fields (client_id, job_id, job_template_id,
    fleet_template_id, risk_mode, intended_time, earliest_start): they are ignored on decoding.
    """

    model_config = ConfigDict(extra="ignore")

    run_id: str
    job_type: JobType
    latest_finish: datetime | None = None
    max_runtime_sec: int | None = None
    replan_interval_sec: int = 3600
    monitor_poll_sec: float = 5.0
    max_attempts: int = 3
    search_attributes: bool = True
    history_event_limit: int = Field(
        1000, description="While sleeping, continue-as-new once the history has this many events"
    )
    resume: ResumeState | None = Field(None, description="Set when a sleeping run continued-as-new")
    retry: RetrySpec | None = Field(None, description="Retry policy of failed attempts (None: no retries)")


class PlanRequest(BaseModel):
    run_id: str
    retry_attempt: int | None = Field(None, description="Re-plan of a retry: the attempt it is for")
    not_before: datetime = Field(description="workflow.now() at planning time; no start before it")
    current_start: datetime | None = Field(None, description="Re-plan: the start chosen so far")


class PlanResult(BaseModel):
    start: datetime
    latest_start: datetime | None = Field(
        None, description="After this the run can no longer meet its deadline"
    )
    p50_sec: float
    p90_sec: float
    capacity: Capacity = Capacity.ON_DEMAND
    rationale: str = ""
    moved: bool = True
    doc: dict[str, Any] = Field(default_factory=dict, description="The plan as stored on the run (API view)")
    carbon_chosen_g: float | None = None
    carbon_earliest_g: float | None = None
    region: str | None = Field(
        None, description="The AWS region the plan chose (issue 14); None in histories recorded before it"
    )


class ResumeState(BaseModel):
    """What a sleeping run carries into its next history when it continues-as-new."""

    plan: PlanResult
    next_replan: datetime
    continued: int = Field(1, description="How many times this run has continued-as-new")


class LaunchCheckRequest(BaseModel):
    run_id: str


class LaunchCheck(BaseModel):
    """May this run launch now? No when its client is suspended or its record is already final."""

    allowed: bool
    reason: str | None = None


class RunUpdate(BaseModel):
    """Partial update of a run row; None fields stay unchanged; a terminal status is never overwritten."""

    run_id: str
    status: RunStatus | None = None
    status_reason: str | None = None
    planned_start: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int | None = None
    exit_code: int | None = None
    capacity: Capacity | None = None
    fleet: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    carbon_chosen_g: float | None = None
    carbon_earliest_g: float | None = None
    attempt_record: dict[str, Any] | None = Field(
        None, description="An attempt's record for the run's attempt log (merged by attempt number)"
    )
    events: list[RunEvent] = Field(default_factory=list, description="Webhook events of this change")


class LaunchRequest(BaseModel):
    run_id: str
    attempt: int
    capacity: Capacity = Capacity.ON_DEMAND


class MonitorRequest(BaseModel):
    fleet: FleetHandle
    poll_sec: float = 5.0


class FinishRequest(BaseModel):
    run_id: str
    status: RunStatus
    status_reason: str | None = None
    exit_code: int | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime
    attempt_record: dict[str, Any] | None = None
    events: list[RunEvent] = Field(default_factory=list)


class CancelRequest(BaseModel):
    reason: str | None = None


class RunState(BaseModel):
    """What the ``status`` query returns."""

    run_id: str
    status: RunStatus
    status_reason: str | None = None
    planned_start: datetime | None = None
    attempt: int = 0
    cancel_requested: bool = False


# ---------------------------------------------------------------- maintenance
def maintenance_workflow_id(task_queue: str) -> str:
    """One maintenance loop per task queue: ``orchestrator-maintenance`` for the default queue."""
    return f"{task_queue}-maintenance"


class MaintenanceInput(BaseModel):
    interval_sec: float = 60.0
    iterations_per_run: int = Field(50, description="Passes before continue-as-new (bounded history)")
    state: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-task state (cursors)")
    passes_before: int = Field(0, description="Passes done by earlier runs of the chain")


class MaintenancePassInput(BaseModel):
    state: dict[str, dict[str, Any]] = Field(default_factory=dict)


class MaintenancePassResult(BaseModel):
    state: dict[str, dict[str, Any]] = Field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)


class MaintenanceStats(BaseModel):
    passes: int
    last: MaintenancePassResult | None = None


RunInput.model_rebuild()


# ---------------------------------------------------------------- webhooks (issue 19)
class DeliveryInput(BaseModel):
    """One delivery to carry out (signal ``enqueue`` of WebhookDeliveryWorkflow), with its retry policy."""

    delivery_id: str
    redelivery: int = 0
    initial_interval_sec: float = 5.0
    backoff_coefficient: float = 2.0
    max_interval_sec: float = 600.0
    max_attempts: int = 12
    timeout_sec: float = 10.0


class DeliveryQueueInput(BaseModel):
    """WebhookDeliveryWorkflow: the deliveries of one endpoint for one run, one at a time, in order."""

    pending: list[DeliveryInput] = Field(default_factory=list, description="Carried over continue-as-new")
    idle_sec: float = Field(60.0, description="Ends after this long with nothing to deliver")


class DeliverRequest(BaseModel):
    delivery_id: str
    timeout_sec: float = 10.0


class DeliveryFailed(BaseModel):
    delivery_id: str
    error: str


ERR_WEBHOOK_REFUSED = "WebhookRefused"  # deliver_webhook: the endpoint is gone or its address refused


def delivery_workflow_id(endpoint_id: str, run_id: str | None, delivery_id: str, redelivery: int = 0) -> str:
    """A run's events for one endpoint share a workflow (delivered in order); a test event or a
    redelivery has its own."""
    if run_id and not redelivery:
        return f"webhook-{endpoint_id}-{run_id}"
    return f"webhook-{delivery_id}" + (f"-r{redelivery}" if redelivery else "")
