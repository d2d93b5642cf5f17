"""Keyset pagination over (created_at DESC, id DESC) with an opaque cursor."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from services.errors import BadRequest


def encode_cursor(created_at: datetime, id_: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), id_]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts, id_ = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(ts), str(id_)
    except Exception as exc:  # noqa: BLE001
        raise BadRequest("invalid cursor; pass the next_cursor value of a previous page") from exc


def paginate(
    session: Session, stmt: Select, model: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Run ``stmt`` newest first; return (rows, next_cursor)."""
    if cursor:
        ts, id_ = decode_cursor(cursor)
        stmt = stmt.where(or_(model.created_at < ts, and_(model.created_at == ts, model.id < id_)))
    rows = list(session.scalars(stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt
