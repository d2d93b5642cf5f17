"""Keyset pagination over (created_at DESC, id DESC) with an opaque cursor."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from services.errors import Unprocessable, field_error


def encode_cursor(created_at: datetime, id_: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at.isoformat(), id_]).encode()).decode()


_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# what a page ever returns: rows created in this era (the bounds keep a forged time inside what every
# database and datetime arithmetic can hold: year 1 or 9999 with an offset overflows)
_OLDEST, _NEWEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
_CURSOR_HELP = "invalid cursor; pass the next_cursor value of a previous page"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of a cursor ``encode_cursor`` made. Anything else (not base64 JSON, a naive or
    out-of-range time, an id with characters no id has: NUL, lone surrogates) is Unprocessable naming
    ``cursor``, never a database error."""
    try:
        ts, id_ = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if not isinstance(ts, str) or not isinstance(id_, str) or not _ID_RE.fullmatch(id_):
            raise ValueError("not a cursor")
        when = datetime.fromisoformat(ts)
        if when.tzinfo is None or not _OLDEST <= when < _NEWEST:
            raise ValueError("not a cursor time")
        return when.astimezone(UTC), id_
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the answer is the same
        raise Unprocessable(_CURSOR_HELP, [field_error("cursor", _CURSOR_HELP)]) from exc


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
