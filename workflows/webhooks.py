"""WebhookDeliveryWorkflow: the deliveries of one endpoint for one run, in the order the run emitted them
(signal ``enqueue``, sent with signal-with-start after each event is stored); a test event or a redelivery
gets a workflow of its own. Each delivery retries with exponential backoff here, not in the run's workflow,
so a failing endpoint never slows or blocks a run (it only delays that endpoint's later events of the run).
Deterministic orchestration only: the POST is an activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from models.workflow import (
        ERR_WEBHOOK_REFUSED,
        DeliverRequest,
        DeliveryFailed,
        DeliveryInput,
        DeliveryQueueInput,
    )

MAX_PER_HISTORY = 100  # deliveries before continue-as-new (bounded history)


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    def __init__(self) -> None:
        self._queue: list[DeliveryInput] = []
        self._seen: set[tuple[str, int]] = set()

    @workflow.signal
    def enqueue(self, item: DeliveryInput) -> None:
        """Idempotent: a retried emitting activity signals the same delivery again."""
        key = (item.delivery_id, item.redelivery)
        if key not in self._seen:
            self._seen.add(key)
            self._queue.append(item)

    @workflow.run
    async def run(self, inp: DeliveryQueueInput) -> int:
        for item in inp.pending:
            self.enqueue(item)
        done = 0
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self._queue), timeout=timedelta(seconds=inp.idle_sec)
                )
            except TimeoutError:
                if not self._queue:  # (a signal may land with the timer: then go on)
                    return done  # a later event of the run starts a new one (signal-with-start)
            item = self._queue.pop(0)
            await self._deliver(item)
            done += 1
            if done >= MAX_PER_HISTORY and self._queue:
                workflow.continue_as_new(DeliveryQueueInput(pending=self._queue, idle_sec=inp.idle_sec))

    async def _deliver(self, item: DeliveryInput) -> None:
        try:
            await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                DeliverRequest(delivery_id=item.delivery_id, timeout_sec=item.timeout_sec),
                # a worker killed mid-POST: the attempt times out and is retried (the same event id)
                start_to_close_timeout=timedelta(seconds=item.timeout_sec + 5),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=item.initial_interval_sec),
                    backoff_coefficient=item.backoff_coefficient,
                    maximum_interval=timedelta(seconds=max(item.max_interval_sec, item.initial_interval_sec)),
                    maximum_attempts=item.max_attempts,
                    non_retryable_error_types=[ERR_WEBHOOK_REFUSED],
                ),
            )
        except ActivityError as exc:
            cause = getattr(exc.cause, "message", None) or str(exc)
            await workflow.execute_activity_method(
                WebhookActivities.fail_delivery,
                DeliveryFailed(delivery_id=item.delivery_id, error=f"gave up: {cause}"[:500]),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
