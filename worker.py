"""Temporal worker: runs JobRunWorkflow and its activities on task queue ``orchestrator``, and the
maintenance loop (MaintenanceWorkflow ``<queue>-maintenance``: reconciler of stranded runs, other sweeps).

Start several processes to scale out; Temporal balances them, and each one starting the maintenance loop is
harmless (the existing one is kept). SIGTERM/SIGINT drain gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.maintenance import MaintenanceActivities
from activities.recurring import RecurringActivities
from activities.run_activities import RunActivities
from activities.webhooks import WebhookActivities
from core.db import Database
from core.logs import setup_logging
from core.settings import Settings, get_settings
from core.temporal import connect
from fleets import get_driver
from models.workflow import MaintenanceInput, maintenance_workflow_id
from workflows.job_run import JobRunWorkflow
from workflows.maintenance import MaintenanceWorkflow
from workflows.recurring import RecurringFiringWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger("orch.worker")


def build_worker(client, settings: Settings, db: Database) -> Worker:
    acts = RunActivities(settings, db, get_driver(settings.fleet_driver, settings))
    maint = MaintenanceActivities(settings, db, client)
    recurring = RecurringActivities(settings, db)  # issue 13: firings of recurring jobs' Schedules
    hooks = WebhookActivities(settings, db)  # issue 19: webhook deliveries
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[JobRunWorkflow, MaintenanceWorkflow, RecurringFiringWorkflow, WebhookDeliveryWorkflow],
        activities=acts.all() + maint.all() + recurring.all() + hooks.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_sec),
        max_concurrent_activities=settings.worker_max_activities,
    )


async def ensure_maintenance(client, settings: Settings) -> None:
    """Start the maintenance loop unless it runs already (one RPC; races between workers are harmless: the
    fixed id admits one running loop, USE_EXISTING keeps it). Settings apply when a loop is (re)started."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    await client.start_workflow(
        MaintenanceWorkflow.run,
        MaintenanceInput(interval_sec=settings.maintenance_interval_sec),
        id=maintenance_workflow_id(settings.temporal_task_queue),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary="orchestrator maintenance: reconciler of stranded runs and other sweeps",
    )


async def main(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if settings.worker_metrics_port:
        Runtime.set_default(
            Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
                    )
                )
            ),
            error_if_already_set=False,
        )
    # Activities run their blocking DB and fleet-driver calls through asyncio.to_thread. The default executor
    # has only min(32, cores + 4) threads (6 on 2 cores): a few slow launches then queue every other activity
    # behind them, and the worker holds far more accepted activities than it runs (all lost until their
    # timeouts if it dies). Size it explicitly.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="orch-activity")
    )
    client = await connect(settings)
    db = Database(settings)
    worker = build_worker(client, settings, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started on task queue %s (driver %s)", settings.temporal_task_queue, settings.fleet_driver
    )
    async with worker:
        if settings.maintenance_enabled:
            try:
                await ensure_maintenance(client, settings)
            except Exception:  # noqa: BLE001 - runs still work; the next worker start tries again
                log.exception("could not start the maintenance workflow")
        await stop.wait()
        log.info("worker draining (up to %s s)", settings.worker_shutdown_grace_sec)
    db.dispose()


if __name__ == "__main__":
    setup_logging()
    asyncio.run(main())
