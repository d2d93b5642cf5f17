"""Provider responses cached in the DB (table ``carbon_cache``), shared by every API and worker process, so
thousands of jobs planned in the same hour call a carbon provider once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models.db import CarbonCache, utcnow


class DbCarbonCache:
    """The ``get``/``put`` cache protocol of core.carbon, over a SQLAlchemy session."""

    def __init__(self, session: Session):
        self.session = session

    def get(self, key: str) -> bytes | None:
        row = self.session.get(CarbonCache, key)
        if row is None or row.expires_at <= utcnow():
            return None
        return row.payload

    def put(self, key: str, value: bytes, ttl_sec: int) -> None:
        expires = utcnow() + timedelta(seconds=ttl_sec)
        with self.session.begin_nested():  # a concurrent writer of the same key must not break the caller
            self.session.merge(CarbonCache(key=key, payload=value, expires_at=expires))
        self.session.execute(delete(CarbonCache).where(CarbonCache.expires_at < utcnow() - timedelta(days=1)))
