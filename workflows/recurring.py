"""RecurringFiringWorkflow: what each firing of a recurring job's Temporal Schedule runs.

1. ``create_firing_run`` (activity) creates the job + run rows for this firing, idempotently by
   (recurring job, nominal time): a retried activity or a replay after a killed worker finds the same run.
2. The run's ``JobRunWorkflow`` (its ``Run.workflow_id``) starts as a child that outlives this workflow
   (ABANDON), and this workflow waits for it: while a run is in flight its firing is running, so the
   Schedule's overlap policy (skip / buffer one / allow all) applies to runs. A child already started (the
   reconciler may start a PENDING run whose firing's worker died) is fine: the run exists once.

Deterministic: the fire time comes from the Schedule's ``TemporalScheduledStartTime`` search attribute (the
workflow's start time for a workflow not started by a Schedule), everything else from the activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.recurring import RecurringActivities
    from models.domain import SA_CLIENT_ID, SA_JOB_TEMPLATE_ID, SA_RUN_STATUS, RunStatus
    from models.recurring_workflow import FiringArgs, FiringOutcome, FiringRequest
    from models.workflow import RunState

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# Short: a firing's margin may be only seconds long, and the activity is one quick, idempotent DB step, so a
# worker killed mid-activity must not hold the retry back for long.
FIRING_ACTIVITY: dict = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
)


@workflow.defn(name="RecurringFiringWorkflow")
class RecurringFiringWorkflow:
    @workflow.run
    async def run(self, args: FiringArgs) -> FiringOutcome:
        info = workflow.info()
        fire_time = info.typed_search_attributes.get(SCHEDULED_START) or info.start_time
        made = await workflow.execute_activity_method(
            RecurringActivities.create_firing_run,
            FiringRequest(recurring_job_id=args.recurring_job_id, fire_time=fire_time),
            **FIRING_ACTIVITY,
        )
        outcome = FiringOutcome(
            recurring_job_id=args.recurring_job_id, nominal_time=made.nominal_time, run_id=made.run_id
        )
        if made.run_input is None or made.workflow_id is None:
            outcome.detail = made.skipped or "no run for this firing"
            return outcome
        inp = made.run_input
        try:
            child = await workflow.start_child_workflow(
                "JobRunWorkflow",
                inp,
                id=made.workflow_id,
                result_type=RunState,
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(SearchAttributeKey.for_keyword(SA_CLIENT_ID), made.client_id),
                        SearchAttributePair(
                            SearchAttributeKey.for_keyword(SA_JOB_TEMPLATE_ID), made.job_template_id
                        ),
                        SearchAttributePair(SearchAttributeKey.for_keyword(SA_RUN_STATUS), RunStatus.PENDING),
                    ]
                ),
                static_summary=made.summary,
                static_details=made.details,
            )
        except WorkflowAlreadyStartedError:
            outcome.detail = f"run {made.run_id}'s workflow was already started (reconciler); not waited for"
            return outcome
        try:
            state: RunState = await child
            outcome.run_status = state.status
            outcome.detail = f"run {made.run_id} ended {state.status}"
        except ChildWorkflowError as exc:
            outcome.detail = f"run {made.run_id}'s workflow failed: {exc.cause or exc}"
        return outcome
