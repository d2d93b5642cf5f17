"""Payloads of RecurringFiringWorkflow and its activity (pydantic, like models/workflow.py: new fields need
defaults, or running workflows fail to decode their history)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.workflow import RunInput


class FiringArgs(BaseModel):
    """The Schedule action's argument: everything else is read from the DB when the firing is processed."""

    recurring_job_id: str


class FiringRequest(BaseModel):
    recurring_job_id: str
    fire_time: datetime = Field(description="Temporal's scheduled time of this firing (or the trigger time)")


class FiringResult(BaseModel):
    created: bool = Field(description="False: an earlier attempt of the same firing had made the run")
    nominal_time: datetime | None = None
    run_id: str | None = None
    workflow_id: str | None = None
    run_input: RunInput | None = Field(None, description="Set when the run's JobRunWorkflow should start")
    summary: str | None = None
    details: str | None = None
    skipped: str | None = Field(None, description="Why no workflow is started for this firing")
    # search attributes of the run's workflow ("" in histories recorded before RunInput was trimmed)
    client_id: str = ""
    job_template_id: str = ""


class FiringOutcome(BaseModel):
    """What RecurringFiringWorkflow returns (shown in the Web UI)."""

    recurring_job_id: str
    nominal_time: datetime | None = None
    run_id: str | None = None
    run_status: str | None = None
    detail: str = ""
