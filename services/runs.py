"""Runs: status (one run, or a filtered page), best-effort cancel, and the app's log (application layer).

``client`` is the calling tenant, or None for the admin (who reads and cancels any run). Blocking DB work runs
in a worker thread and COMMITS before Temporal or S3 is awaited. The log is read from the artifact store
(``fleets.logstore``), where both drivers put it, so no fleet driver is built here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleets.logstore import log_key, log_location, read_tail
from models.api import TERMINAL, RunStatus
from models.db import Client, Run, utcnow
from models.workflow import CancelRequest
from services.access import visible_run
from services.errors import Conflict, NotFound, Unavailable
from services.jobs import TemporalSource
from services.pagination import paginate
from services.webhooks import record_final_event

FINAL = sorted(s.value for s in TERMINAL)


def list_runs(
    session: Session,
    client: Client | None,
    limit: int,
    cursor: str | None,
    *,
    status: RunStatus | None = None,
    job_template_id: str | None = None,
    job_id: str | None = None,
    client_id: str | None = None,
    recurring_job_id: str | None = None,
) -> tuple[list[Run], str | None]:
    """Newest first; a client sees only its own runs (naming another ``client_id`` simply gives none)."""
    stmt = select(Run)
    if client is not None:
        stmt = stmt.where(Run.client_id == client.id)
    if client_id:
        stmt = stmt.where(Run.client_id == client_id)
    if status:
        stmt = stmt.where(Run.status == status.value)
    if job_template_id:
        stmt = stmt.where(Run.job_template_id == job_template_id)
    if job_id:
        stmt = stmt.where(Run.job_id == job_id)
    if recurring_job_id:
        stmt = stmt.where(Run.recurring_job_id == recurring_job_id)
    return paginate(session, stmt, Run, limit, cursor)


def get_run(session: Session, run_id: str, client: Client | None) -> Run:
    return visible_run(session, run_id, client)


async def cancel_run(
    session: Session, run_id: str, client: Client | None, reason: str | None, temporal: TemporalSource
) -> Run:
    """A run with a workflow is signalled (CANCELLING, then CANCELLED once its fleet is gone). A run with no
    workflow (PENDING: the API died before starting it) is marked CANCELLED directly; the reconciler never
    starts a run that is no longer PENDING, and a workflow re-checks its record before every launch.
    Conflict if the run already finished; Unavailable if Temporal cannot be reached for a started run."""
    from temporalio.service import RPCError, RPCStatusCode

    def load() -> Run:
        r = visible_run(session, run_id, client)
        session.commit()  # no transaction stays open while we await Temporal
        return r

    r = await anyio.to_thread.run_sync(load)
    if r.status in TERMINAL:
        raise Conflict(f"run {run_id} already finished with status {r.status}; nothing to cancel")
    reason = reason or ("cancelled by the admin" if client is None else "cancelled through the API")
    req = CancelRequest(reason=reason)
    handle = None
    try:
        handle = (await temporal()).get_workflow_handle(r.workflow_id)
        await handle.signal("cancel", req)  # carries the reason; the workflow handles it first
        has_workflow = True
        with contextlib.suppress(RPCError):  # already closed: the signal was enough
            # Temporal cancellation too, so the workflow ends Canceled in the Web UI and CLI (its clean-up
            # still runs, shielded), not Completed
            await handle.cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND and r.status != "PENDING":
            raise Unavailable("could not reach the run's workflow; retry the cancel") from exc
        has_workflow = False  # none (or already closed): nothing will carry the cancel out, so we do
    except Unavailable:
        if r.status != "PENDING":
            raise
        has_workflow = False  # Temporal unreachable, run not started: its launch check will see CANCELLED
    except Exception as exc:
        raise Unavailable("could not reach the run's workflow; retry the cancel") from exc

    def store() -> Run:
        now = utcnow()
        values: dict[str, Any] = {"status": "CANCELLING", "status_reason": reason, "updated_at": now}
        if not has_workflow:
            values |= {"status": "CANCELLED", "finished_at": now}
        session.execute(update(Run).where(Run.id == r.id, Run.status.not_in(FINAL)).values(**values))
        session.refresh(r)
        if not has_workflow:  # no workflow will send run.cancelled: stored here, sent by the redrive task
            record_final_event(session, r)
        session.commit()
        return r

    r = await anyio.to_thread.run_sync(store)
    if not has_workflow and handle is not None:
        try:  # the reconciler may have started it a moment ago: tell it too (best effort)
            await handle.signal("cancel", req)
        except Exception:  # noqa: BLE001, S110 - none there: nothing to tell
            pass
    return r


@dataclass
class RunLog:
    run_id: str
    attempt: int
    text: str


def attempt_history(r: Run) -> list[dict[str, Any]]:
    """The run's attempts in order (one record per attempt that ran, issue 19), times as datetimes."""
    out = []
    for rec in sorted(r.attempt_log or [], key=lambda a: int(a.get("attempt", 0))):
        item = {k: rec.get(k) for k in ("attempt", "state", "exit_code", "reason", "capacity")}
        for k in ("started_at", "finished_at"):
            item[k] = datetime.fromisoformat(rec[k]) if rec.get(k) else None
        out.append(item)
    return out


def merge_attempt(log: list[Any] | None, record: dict[str, Any]) -> list[Any]:
    """The attempt log with ``record`` merged in by attempt number (an activity retried writes it again)."""
    by_attempt = {int(a["attempt"]): a for a in (log or [])}
    n = int(record["attempt"])
    by_attempt[n] = {**by_attempt.get(n, {}), **record}
    return [by_attempt[k] for k in sorted(by_attempt)]


async def run_log(
    session: Session,
    s3: Any,
    bucket: str,
    run_id: str,
    client: Client | None,
    tail_bytes: int = 65536,
    attempt: int | None = None,
) -> RunLog:
    """The tail of the app's log of one attempt (default: the latest launched), from the artifact store
    (``bucket`` is the default when the stored handle names none). NotFound before the run has launched
    or for an attempt that never launched."""
    r = await anyio.to_thread.run_sync(visible_run, session, run_id, client)
    if not r.fleet:
        raise NotFound(f"run {run_id} has no logs yet (status {r.status})")
    latest = int(r.fleet["attempt"])
    if attempt is not None and attempt != latest:
        known = {int(a["attempt"]) for a in (r.attempt_log or [])}
        if attempt not in known:
            raise NotFound(f"run {run_id} has no attempt {attempt} with a log (latest: {latest})")
        ref = r.fleet.get("ref") or {}
        where = (ref.get("result_bucket") or bucket, log_key(r.client_id, r.id, attempt))
        try:
            text = await asyncio.to_thread(read_tail, s3, *where, tail_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable("the artifact store holding the logs is unreachable; retry later") from exc
        return RunLog(run_id=r.id, attempt=attempt, text=text)
    where = log_location(r.fleet, r.client_id, bucket)
    try:
        text = await asyncio.to_thread(read_tail, s3, *where, tail_bytes)  # not the request threadpool
    except (BotoCoreError, ClientError) as exc:
        raise Unavailable("the artifact store holding the logs is unreachable; retry later") from exc
    return RunLog(run_id=r.id, attempt=int(r.fleet["attempt"]), text=text)
