"""Starting a run's JobRunWorkflow from its DB rows: shared by the API (create_job) and the reconciler."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client as TemporalClient
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.settings import Settings
from models.db import Job, JobTemplate, Run
from models.domain import SA_CLIENT_ID, SA_JOB_TEMPLATE_ID, SA_RUN_STATUS, JobType, RunStatus
from models.workflow import RunInput


def run_input_for(settings: Settings, run: Run, job: Job, template: JobTemplate) -> RunInput:
    return RunInput(
        run_id=run.id,
        job_type=JobType(job.type),
        latest_finish=job.latest_finish,
        max_runtime_sec=template.max_runtime_sec,
        replan_interval_sec=settings.replan_interval_sec,
        monitor_poll_sec=settings.monitor_poll_sec,
    )


async def start_run_workflow(
    client: TemporalClient, settings: Settings, run: Run, job: Job, template: JobTemplate
) -> bool:
    """Start ``run-<run_id>``; True if this call started it, False if it already existed (harmless: the
    workflow id is deterministic, so racing starters cannot create two workflows for one run)."""
    when = (
        f"at {job.intended_time.isoformat()}"
        if job.type == "ONE_TIME" and job.intended_time
        else f"in [{job.earliest_start}, {job.latest_finish}]"
    )
    try:
        await client.start_workflow(
            "JobRunWorkflow",
            run_input_for(settings, run, job, template),
            id=run.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_CLIENT_ID), run.client_id),
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_JOB_TEMPLATE_ID), template.id),
                    SearchAttributePair(SearchAttributeKey.for_keyword(SA_RUN_STATUS), RunStatus.PENDING),
                ]
            ),
            static_summary=f"{template.name} ({job.type}, {job.risk_mode}) on {run.fleet_template_id}",
            static_details=f"client {run.client_id}, job {job.id}, run {run.id}, start {when}",
            rpc_timeout=timedelta(seconds=10),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
