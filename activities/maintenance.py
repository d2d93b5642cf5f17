"""Maintenance tasks, run one after the other by ``MaintenanceWorkflow`` every
``ORCH_MAINTENANCE_INTERVAL_SEC``.

Adding a task: decorate ``async def task(ctx, state) -> (state, summary)`` (or a plain ``def``, run in a
thread) with ``@maintenance_task("name")``; import its module from ``worker.py`` so it registers. ``state`` is
the task's own small JSON dict (e.g. a cursor), carried by the workflow from pass to pass; ``summary`` is a
JSON dict shown by the workflow's ``stats`` query. A task that raises is logged and reported; the other tasks
still run, and it is tried again at the next pass. The workflow itself never changes when tasks are added
(they all run inside the one ``maintenance_pass`` activity), so adding one never breaks replay of the loop.

Tasks shipped here:
- ``reconcile_runs``: no stranded runs. A run ``PENDING`` for longer than ``ORCH_RECONCILE_GRACE_SEC`` whose
  workflow ``run-<id>`` does not exist (the API died between committing the rows and starting the workflow) is
  started; a run in a non-final state whose workflow is closed (terminated, failed, timed out) is marked
  ``FAILED`` with the reason, except a run left ``CANCELLING`` (its workflow closed or gone before recording
  the cancel), which is marked ``CANCELLED``.
- ``sweep_artifact_store``: every ``ORCH_ARTIFACT_SWEEP_INTERVAL_SEC``, deletes artifact objects no row
  references and aborts incomplete multipart uploads, both older than ``ORCH_ARTIFACT_SWEEP_GRACE_SEC``
  (``services.artifacts.sweep_artifact_store``).
- ``clean_run_dirs`` (``local`` driver): deletes finished attempts' run directories after
  ``ORCH_LOCAL_RUN_RETENTION_HOURS`` (``fleets.local.clean_run_dirs``).
- ``record_carbon_actuals``: for finished runs with no measured carbon yet, asks the carbon provider for the
  measured (actual) intensity over the run's real interval and its baseline interval and records the
  measured gCO2e where the provider has actuals (``services.actuals``); up to ``ACTUALS_BATCH`` runs a pass.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from temporalio import activity
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.db import Database
from core.s3 import s3_client
from core.settings import Settings
from fleets.local import clean_run_dirs
from models.db import Job, Run, utcnow
from models.domain import TERMINAL_STATUSES, RunStatus
from models.workflow import MaintenancePassInput, MaintenancePassResult
from services.actuals import record_actuals
from services.artifacts import sweep_artifact_store
from services.job_templates import template_at
from services.jobs import start_run_workflow
from services.webhooks import record_final_event, stale_pending, start_deliveries, to_start

log = logging.getLogger("orch.maintenance")

FINAL = sorted(str(s) for s in TERMINAL_STATUSES)
ACTUALS_BATCH = 50  # runs looked at per pass (each may cost two provider requests)


@dataclass
class MaintenanceContext:
    settings: Settings
    db: Database
    temporal: TemporalClient


TaskFn = Callable[[MaintenanceContext, dict[str, Any]], Any]
MAINTENANCE_TASKS: dict[str, TaskFn] = {}


def maintenance_task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Register a maintenance task (see the module docstring)."""

    def register(fn: TaskFn) -> TaskFn:
        MAINTENANCE_TASKS[name] = fn
        return fn

    return register


class MaintenanceActivities:
    def __init__(self, settings: Settings, db: Database, temporal: TemporalClient):
        self.ctx = MaintenanceContext(settings, db, temporal)

    @activity.defn
    async def maintenance_pass(self, inp: MaintenancePassInput) -> MaintenancePassResult:
        out = MaintenancePassResult()
        for name, fn in list(MAINTENANCE_TASKS.items()):
            activity.heartbeat(name)
            state = dict(inp.state.get(name, {}))
            try:
                if inspect.iscoroutinefunction(fn):
                    new_state, summary = await fn(self.ctx, state)
                else:
                    new_state, summary = await asyncio.to_thread(fn, self.ctx, state)
            except Exception as exc:  # noqa: BLE001 - one failing task must not stop the others
                log.exception("maintenance task %s failed", name)
                out.state[name] = state
                out.errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            out.state[name], out.summaries[name] = new_state, summary
            if any(v for k, v in summary.items() if k != "examined"):
                log.info("maintenance task %s: %s", name, summary)
        return out

    def all(self) -> list:
        return [self.maintenance_pass]


# ---------------------------------------------------------------- reconcile_runs
async def _describe(temporal: TemporalClient, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await temporal.get_workflow_handle(workflow_id).describe(rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _stale_pending(db: Database, grace_sec: float, limit: int) -> list[tuple[str, str]]:
    """(run id, workflow id) of runs PENDING for longer than the grace period."""
    cutoff = utcnow() - timedelta(seconds=grace_sec)
    with db.session() as s:
        rows = s.execute(
            select(Run.id, Run.workflow_id)
            .where(Run.status == RunStatus.PENDING, Run.created_at < cutoff)
            .order_by(Run.created_at)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]


def _start_if_still_pending(ctx: MaintenanceContext, run_id: str, loop: asyncio.AbstractEventLoop) -> bool:
    """Start the run's workflow while holding its row: the UPDATE takes the row's write lock (PostgreSQL) or
    the database's (SQLite) and matches only while the run is still PENDING, so a concurrent cancel (which
    marks it CANCELLED with a conditional UPDATE) either happens first and we never start it, or waits until
    the workflow exists and then reaches it by signal."""
    with ctx.db.session() as s:
        held = cast(
            CursorResult[Any],
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.PENDING)
                .values(updated_at=utcnow())
            ),
        )
        if held.rowcount != 1:
            return False  # cancelled (or started and moved on) meanwhile
        run = s.get_one(Run, run_id)
        job = s.get_one(Job, run.job_id)
        template = template_at(s, run.job_template_id, run.job_template_version)
        coro = start_run_workflow(ctx.temporal, ctx.settings, run, job, template)
        started = asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)
    if started:
        log.warning("reconciler started the workflow of stranded run %s", run_id, extra={"run_id": run_id})
    return started


def _non_final_page(db: Database, after: str, limit: int) -> list[tuple[str, str, str]]:
    with db.session() as s:
        rows = s.execute(
            select(Run.id, Run.workflow_id, Run.status)
            .where(Run.status.not_in(FINAL), Run.id > after)
            .order_by(Run.id)
            .limit(limit)
        )
        return [(r.id, r.workflow_id, r.status) for r in rows]


def _close_run(db: Database, run_id: str, status: str, reason: str) -> bool:
    """Record a final status, only if the run is still not final (the workflow may have just recorded it)."""
    now = utcnow()
    with db.session() as s:
        res = cast(
            CursorResult[Any],
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.not_in(FINAL))
                .values(status=status, status_reason=reason, finished_at=now, updated_at=now)
            ),
        )
        done = res.rowcount == 1
        if done:  # its webhook event, delivered by the redrive task below
            record_final_event(s, s.get_one(Run, run_id))
    if done:
        log.warning("reconciler marked run %s %s: %s", run_id, status, reason, extra={"run_id": run_id})
    return done


def _verdict(
    desc: WorkflowExecutionDescription | None, workflow_id: str, status: str | None = None
) -> tuple[str, str] | None:
    """What a non-final run (in ``status``) whose workflow is in this state should become (None: leave it).

    A run left ``CANCELLING`` (its cancel was accepted) whose workflow is closed or gone ends ``CANCELLED``:
    nothing runs for it any more, and the client asked for exactly that."""
    if desc is not None and desc.status in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
        None,
    ):
        return None
    if status == RunStatus.CANCELLING:
        how = "no longer exists" if desc is None or desc.status is None else f"ended {desc.status.name}"
        return RunStatus.CANCELLED, f"cancel requested; its workflow {workflow_id} {how} before recording it"
    if desc is None:
        return RunStatus.FAILED, f"its workflow {workflow_id} no longer exists"
    st = desc.status
    assert st is not None
    if st == WorkflowExecutionStatus.CANCELED:
        return RunStatus.CANCELLED, "workflow cancelled through Temporal"
    return RunStatus.FAILED, f"its workflow {workflow_id} ended {st.name} without recording the run's outcome"


@maintenance_task("reconcile_runs")
async def reconcile_runs(ctx: MaintenanceContext, state: dict[str, Any]) -> tuple[dict, dict]:
    """Start stranded PENDING runs; close non-final runs whose workflow is closed (rotating cursor)."""
    s = ctx.settings
    loop = asyncio.get_running_loop()
    started = closed = 0
    pending = await asyncio.to_thread(_stale_pending, ctx.db, s.reconcile_grace_sec, s.reconcile_batch)
    for run_id, workflow_id in pending:
        desc = await _describe(ctx.temporal, workflow_id)
        if desc is None:
            started += await asyncio.to_thread(_start_if_still_pending, ctx, run_id, loop)
        elif (verdict := _verdict(desc, workflow_id)) is not None:  # closed before it even planned
            closed += await asyncio.to_thread(_close_run, ctx.db, run_id, *verdict)
    # every non-final run, a page per pass, wrapping around: is its workflow still alive?
    page = await asyncio.to_thread(_non_final_page, ctx.db, state.get("after", ""), s.reconcile_batch)
    for run_id, workflow_id, status in page:
        if status == RunStatus.PENDING:
            continue  # a workflow may not exist yet; the stale ones were handled above
        verdict = _verdict(await _describe(ctx.temporal, workflow_id), workflow_id, status)
        if verdict is not None:
            closed += await asyncio.to_thread(_close_run, ctx.db, run_id, *verdict)
    after = page[-1][0] if len(page) == s.reconcile_batch else ""
    return {"after": after}, {"started": started, "closed": closed, "examined": len(pending) + len(page)}


# ---------------------------------------------------------------- redrive_webhook_deliveries
REDRIVE_GRACE_SEC = 60.0
REDRIVE_BATCH = 200


@maintenance_task("redrive_webhook_deliveries")
async def redrive_webhook_deliveries(ctx: MaintenanceContext, state: dict[str, Any]) -> tuple[dict, dict]:
    """Start the delivery of webhook events stored but never attempted after a minute (their workflow
    never started: Temporal was down, or the reconciler closed the run). Signalling a delivery its
    workflow already holds is ignored: one waiting behind an earlier one of its run is not sent twice."""
    older = utcnow() - timedelta(seconds=REDRIVE_GRACE_SEC)

    def load() -> list:
        with ctx.db.session() as s:
            return to_start(s, stale_pending(s, older, REDRIVE_BATCH))

    items = await asyncio.to_thread(load)
    await start_deliveries(ctx.temporal, ctx.settings, items)
    return state, {"examined": len(items), "started": len(items)}


# ---------------------------------------------------------------- sweep_artifact_store
@maintenance_task("sweep_artifact_store")
def sweep_artifacts(ctx: MaintenanceContext, state: dict[str, Any]) -> tuple[dict, dict]:
    """Orphan objects and incomplete multipart uploads (a crash mid-upload), at most once an interval."""
    now = datetime.now(UTC)
    last = state.get("last")
    interval = ctx.settings.artifact_sweep_interval_sec
    if last and (now - datetime.fromisoformat(last)).total_seconds() < interval:
        return state, {"examined": 0}
    result = sweep_artifact_store(ctx.settings, ctx.db, s3_client(ctx.settings), now)
    return {"last": now.isoformat()}, {
        "examined": result.objects_seen,
        "deleted": result.objects_deleted,
        "multipart_aborted": result.multipart_aborted,
    }


# ---------------------------------------------------------------- clean_run_dirs
@maintenance_task("clean_run_dirs")
def clean_local_run_dirs(ctx: MaintenanceContext, state: dict[str, Any]) -> tuple[dict, dict]:
    """`local` driver: delete finished attempts' run directories after ORCH_LOCAL_RUN_RETENTION_HOURS."""
    if ctx.settings.fleet_driver != "local":
        return state, {"examined": 0}
    removed = clean_run_dirs(ctx.settings, datetime.now(UTC))
    return state, {"removed": len(removed)}


# ---------------------------------------------------------------- record_carbon_actuals
@maintenance_task("record_carbon_actuals")
def record_carbon_actuals(ctx: MaintenanceContext, state: dict[str, Any]) -> tuple[dict, dict]:
    """Measured gCO2e of finished runs (and their baselines) where the provider publishes actuals."""
    with ctx.db.session() as s:
        done = record_actuals(s, ctx.settings, datetime.now(UTC), ACTUALS_BATCH)
    return state, {
        "examined": done.examined,
        "recorded": done.recorded,
        "partial": done.partial,
        "unavailable": done.unavailable,
    }
