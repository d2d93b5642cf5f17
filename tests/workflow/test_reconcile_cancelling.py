"""Issue 21: the reconciler repairs runs left CANCELLING (a cancel was accepted, then the run's workflow
closed or vanished before it recorded the outcome), on the real DB (SQLite and PostgreSQL) and the Temporal
dev server, calling the ``reconcile_runs`` maintenance task directly."""

from __future__ import annotations

from sqlalchemy import update

from activities.maintenance import MAINTENANCE_TASKS, MaintenanceContext
from core.db import Database
from core.temporal import connect
from models.db import Run
from models.workflow import RunInput
from tests.support.api import insert_job_and_run, setup_template


async def test_runs_left_cancelling_end_cancelled(no_worker_api, api_settings, temporal_dev_server):
    settings = api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-here",
        }
    )
    cid, _, tpl = setup_template(no_worker_api)
    _, gone = insert_job_and_run(settings, cid, tpl, status="CANCELLING")  # its workflow never existed
    _, closed = insert_job_and_run(settings, cid, tpl, status="CANCELLING")
    _, failed = insert_job_and_run(settings, cid, tpl, status="SCHEDULED")  # not cancelling: FAILED
    db = Database(settings)
    temporal = await connect(settings)
    try:
        with db.session() as s:
            wf = {r: s.get_one(Run, r).workflow_id for r in (gone, closed, failed)}
            s.execute(update(Run).where(Run.id == gone).values(status_reason="not needed"))
        for run_id in (closed, failed):  # workflows that closed without recording anything
            handle = await temporal.start_workflow(
                "JobRunWorkflow",
                RunInput(run_id=run_id, job_type="ONE_TIME", search_attributes=False),
                id=wf[run_id],
                task_queue=settings.temporal_task_queue,
            )
            await handle.terminate("test")
        ctx = MaintenanceContext(settings, db, temporal)
        # the session's DB holds other modules' runs too: page through every non-final run once (bounded)
        state: dict = {}
        for _ in range(1000):
            state, _summary = await MAINTENANCE_TASKS["reconcile_runs"](ctx, state)
            if not state["after"]:
                break
        with db.session() as s:
            rows = {r: s.get_one(Run, r) for r in (gone, closed, failed)}
            assert rows[gone].status == "CANCELLED", rows[gone].status_reason
            assert "no longer exists" in rows[gone].status_reason
            assert rows[closed].status == "CANCELLED", rows[closed].status_reason
            assert "ended TERMINATED" in rows[closed].status_reason
            assert rows[failed].status == "FAILED"
            assert all(r.finished_at is not None for r in rows.values())
    finally:
        db.dispose()
