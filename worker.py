"""Temporal worker: runs JobRunWorkflow and its activities on task queue ``orchestrator``.

Start several processes to scale out; Temporal balances them. SIGTERM/SIGINT drain gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.run_activities import RunActivities
from core.db import Database
from core.logs import setup_logging
from core.settings import Settings, get_settings
from core.temporal import connect
from fleets import get_driver
from workflows.job_run import JobRunWorkflow

log = logging.getLogger("orch.worker")


def build_worker(client, settings: Settings, db: Database) -> Worker:
    acts = RunActivities(settings, db, get_driver(settings.fleet_driver, settings))
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[JobRunWorkflow],
        activities=acts.all(),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_sec),
        max_concurrent_activities=settings.worker_max_activities,
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
        await stop.wait()
        log.info("worker draining (up to %s s)", settings.worker_shutdown_grace_sec)
    db.dispose()


if __name__ == "__main__":
    setup_logging()
    asyncio.run(main())
