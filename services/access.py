"""Tenancy: which records a caller may see. ``client`` is the calling tenant, or None for the admin."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from models.db import Client, Run
from services.errors import NotFound

T = TypeVar("T")


def owned(session: Session, model: type[T], obj_id: str, client: Client, what: str) -> T:
    """The row ``obj_id`` of ``model`` if it belongs to ``client``; otherwise NotFound (never a refusal: a
    tenant must not learn that another tenant's id exists)."""
    obj: Any = session.get(model, obj_id)
    if obj is None or obj.client_id != client.id:
        raise NotFound(f"{what} {obj_id} not found")
    return obj


def visible_run(session: Session, run_id: str, client: Client | None) -> Run:
    """The run if the caller may see it: the admin (``client`` None) any run, a client its own."""
    if client is not None:
        return owned(session, Run, run_id, client, "run")
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run
