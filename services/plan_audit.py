"""The audit trail of a run's plans (issue 18): what each plan was decided from, so that any claimed saving
can be recomputed later, even from a live provider that keeps no forecast history.

When the plan activity plans (or re-plans) a run, :func:`store_record` keeps one record: the forecast series
of every region the plan looked at (values and 1-sigma at decision time, on the planning grid), the
provider, its zone and fallback reason, the signal, the runtime model, the fleet power, every candidate and
the rule's figures (serialised generically from the planner's dataclasses, so fields the planner adds later
are kept without a change here), the rationale and when it was decided. The run's ``plan["audit_id"]`` names
the record in force; a re-plan the run did not follow is replaced by the next one, earlier plans the run did
follow are kept (at most :data:`MAX_ADOPTED` per run). Records are zlib-compressed JSON, at most
:data:`MAX_RECORD_BYTES`, and deleted with their run.

``GET /v1/runs/{id}/plan`` (:func:`plan_record`) returns the one in force.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import zlib
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models.db import Client, PlanAudit, Run, new_id
from services.access import visible_run
from services.errors import Conflict

__all__ = [
    "FORMAT",
    "MAX_ADOPTED",
    "MAX_RECORD_BYTES",
    "decode",
    "jsonable",
    "plan_record",
    "run_record",
    "store_record",
]

FORMAT = 1
MAX_RECORD_BYTES = 512 * 1024  # compressed; a 31-day window on a 15-min grid, 3 regions: 75 KiB
MAX_ADOPTED = 50  # earlier plans a run followed, kept besides the one in force


def jsonable(obj: Any) -> Any:
    """Plain JSON of the planner's values: dataclasses field by field (whatever fields they have), times
    as ISO 8601, enums as their value, numpy as lists and floats; a non-finite float as a string
    ("inf"), since JSON has none."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and bool(np.isfinite(obj).all()):
            return obj.tolist()  # the common case (a series), without a call per value
        return [jsonable(x) for x in obj.tolist()]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(x) for x in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "total_seconds"):
        return obj.total_seconds()
    return str(obj)


def _encode(record: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(record, separators=(",", ":"), allow_nan=False).encode(), 6)


def decode(payload: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(zlib.decompress(payload))
    return out


def _bounded(record: dict[str, Any]) -> bytes:
    """The record compressed, within :data:`MAX_RECORD_BYTES`: if too large, the sigma, then the values,
    of regions that are neither the home nor the chosen one are dropped (and the record says so)."""
    raw = _encode(record)
    if len(raw) <= MAX_RECORD_BYTES:
        return raw
    keep = {record.get("home_region"), (record.get("chosen") or {}).get("region")}
    for what in ("sigma", "values"):
        for reg in record.get("regions", []):
            if reg.get("region") not in keep and reg.get("series"):
                reg["series"][what] = None
        record["truncated"] = f"series {what} of regions other than the home and the chosen one dropped"
        raw = _encode(record)
        if len(raw) <= MAX_RECORD_BYTES:
            return raw
    return raw  # the home and chosen series alone: bounded by the window limit (ORCH_MAX_WINDOW_DAYS)


def store_record(session: Session, run: Run, record: dict[str, Any], decided_at: datetime) -> str:
    """Keep ``record`` for ``run`` and return its id (put it in the plan's ``audit_id``). The record the
    run's plan names now is marked adopted (the run followed it); records the run never followed (a
    re-plan that kept the start, an activity retried) are replaced; at most :data:`MAX_ADOPTED` adopted
    ones are kept. The caller commits."""
    current = (run.plan or {}).get("audit_id")
    if current:
        session.execute(
            update(PlanAudit).where(PlanAudit.id == current, PlanAudit.run_id == run.id).values(adopted=True)
        )
    session.execute(
        delete(PlanAudit).where(PlanAudit.run_id == run.id, PlanAudit.adopted.is_(False))
    )  # fmt: skip
    old = session.scalars(
        select(PlanAudit.id)
        .where(PlanAudit.run_id == run.id, PlanAudit.adopted.is_(True))
        .order_by(PlanAudit.decided_at.desc(), PlanAudit.created_at.desc())
        .offset(MAX_ADOPTED)
    ).all()
    if old:
        session.execute(delete(PlanAudit).where(PlanAudit.id.in_(list(old))))
    audit_id = new_id("pla")
    record = {**record, "audit_id": audit_id}
    payload = _bounded(record)
    session.add(
        PlanAudit(
            id=audit_id,
            run_id=run.id,
            decided_at=decided_at,
            adopted=False,
            size_bytes=len(payload),
            payload=payload,
        )
    )
    session.flush()
    return audit_id


def run_record(session: Session, run: Run) -> dict[str, Any] | None:
    """The audit record of the plan the run follows (None: planned before records were kept, or not yet)."""
    audit_id = (run.plan or {}).get("audit_id")
    if not audit_id:
        return None
    row = session.get(PlanAudit, audit_id)
    if row is None or row.run_id != run.id:
        return None
    return decode(row.payload)


def plan_record(session: Session, run_id: str, client: Client | None) -> dict[str, Any]:
    """``GET /v1/runs/{id}/plan``: the record of the plan in force, with the earlier plans the run followed
    (time, start, region, expected saving). NotFound for another tenant's run; Conflict when the run has
    no record (not planned yet, or planned before records were kept)."""
    run = visible_run(session, run_id, client)
    record = run_record(session, run)
    if record is None:
        if run.plan is None:
            raise Conflict(f"run {run_id} has no plan audit record: it has not been planned yet")
        raise Conflict(
            f"run {run_id} has no plan audit record: it was planned before plan audit records were kept "
            "(issue 18), or its record could not be written; its stored plan is in GET /v1/runs/{id}"
        )
    rows = session.scalars(
        select(PlanAudit)
        .where(PlanAudit.run_id == run.id, PlanAudit.adopted.is_(True), PlanAudit.id != record["audit_id"])
        .order_by(PlanAudit.decided_at, PlanAudit.created_at)
    ).all()
    earlier = []
    for row in rows:
        r = decode(row.payload)
        chosen = r.get("chosen") or {}
        earlier.append(
            {
                "audit_id": row.id,
                "decided_at": r.get("decided_at"),
                "start": chosen.get("start"),
                "region": chosen.get("region"),
                "expected_saving_pct": chosen.get("saving_vs_earliest_pct"),
            }
        )
    return {**record, "earlier": earlier}
