"""MaintenanceWorkflow: the orchestrator's housekeeping loop (one per task queue, id ``<queue>-maintenance``).

Every ``interval_sec`` it runs the ``maintenance_pass`` activity (all registered tasks, see
``activities/maintenance.py``) and sleeps; after ``iterations_per_run`` passes it continues-as-new, so its
history stays bounded (about 10 events per pass). Each worker starts it idempotently at start-up
(``ensure_maintenance``); if it is ever terminated, the next worker start brings it back. A failing pass is
retried at the next one; the loop itself never fails. Signal ``run_now`` to run a pass immediately; query
``stats`` for the pass count and the last pass's summaries and errors.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities
    from models.workflow import (
        MaintenanceInput,
        MaintenancePassInput,
        MaintenancePassResult,
        MaintenanceStats,
    )


@workflow.defn(name="MaintenanceWorkflow")
class MaintenanceWorkflow:
    def __init__(self) -> None:
        self._passes = 0
        self._last: MaintenancePassResult | None = None
        self._kick = False

    @workflow.signal
    def run_now(self) -> None:
        self._kick = True

    @workflow.query
    def stats(self) -> MaintenanceStats:
        return MaintenanceStats(passes=self._passes, last=self._last)

    @workflow.run
    async def run(self, inp: MaintenanceInput) -> None:
        self._passes = inp.passes_before
        state = dict(inp.state)
        for _ in range(max(1, inp.iterations_per_run)):
            try:
                self._last = await workflow.execute_activity_method(
                    MaintenanceActivities.maintenance_pass,
                    MaintenancePassInput(state=state),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                )
                state = self._last.state
            except ActivityError as exc:
                workflow.logger.warning("maintenance pass failed: %s", exc)
            self._passes += 1
            self._kick = False
            try:
                await workflow.wait_condition(lambda: self._kick, timeout=timedelta(seconds=inp.interval_sec))
            except TimeoutError:
                pass
        workflow.continue_as_new(inp.model_copy(update={"state": state, "passes_before": self._passes}))
