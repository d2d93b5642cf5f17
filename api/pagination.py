"""Query parameters of paginated lists; the pagination itself is ``services.pagination``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from services.pagination import decode_cursor, encode_cursor, paginate

__all__ = ["CursorQ", "LimitQ", "decode_cursor", "encode_cursor", "paginate"]

LimitQ = Annotated[int, Query(ge=1, le=500, description="Page size")]
CursorQ = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
