"""WebhookDeliveryWorkflow: one per delivery (endpoint x event), started after the event is stored.

Delivery retries live here, not in the run's workflow, so a failing endpoint never slows or blocks a run.
Deterministic orchestration only: the POST is an activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from models.workflow import ERR_WEBHOOK_REFUSED, DeliverRequest, DeliveryFailed, DeliveryInput


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> str:
        try:
            return await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                DeliverRequest(delivery_id=inp.delivery_id, timeout_sec=inp.timeout_sec),
                # a worker killed mid-POST: the attempt times out and is retried (same event id)
                start_to_close_timeout=timedelta(seconds=inp.timeout_sec + 10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=inp.initial_interval_sec),
                    backoff_coefficient=inp.backoff_coefficient,
                    maximum_interval=timedelta(seconds=max(inp.max_interval_sec, inp.initial_interval_sec)),
                    maximum_attempts=inp.max_attempts,
                    non_retryable_error_types=[ERR_WEBHOOK_REFUSED],
                ),
            )
        except ActivityError as exc:
            cause = getattr(exc.cause, "message", None) or str(exc)
            await workflow.execute_activity_method(
                WebhookActivities.fail_delivery,
                DeliveryFailed(delivery_id=inp.delivery_id, error=f"gave up: {cause}"[:500]),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            return "failed"
