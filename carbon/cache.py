"""Caches of provider responses: in memory (per process) and in the DB (table ``carbon_cache``, shared by
every API and worker process, so thousands of jobs planned in the same hour call a provider once)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from carbon.base import LiveData
from scheduling.carbon import CarbonSeries

__all__ = ["CarbonCache", "DbCarbonCache", "MemoryTTLCache", "decode_live", "encode_live"]


class CarbonCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl_sec: int) -> None: ...


class MemoryTTLCache:
    """Thread-safe in-process TTL cache (bytes values), bounded to ``max_entries`` (oldest evicted)."""

    def __init__(self, max_entries: int = 1024, clock: Any = time.monotonic) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._data[key]
                return None
            return item[1]

    def put(self, key: str, value: bytes, ttl_sec: int) -> None:
        with self._lock:
            if len(self._data) >= self._max and key not in self._data:
                del self._data[next(iter(self._data))]
            self._data[key] = (self._clock() + ttl_sec, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class DbCarbonCache:
    """The cache protocol over a SQLAlchemy session (table ``carbon_cache``)."""

    def __init__(self, session: Any):
        self.session = session

    def get(self, key: str) -> bytes | None:
        from models.db import CarbonCache as Row
        from models.db import utcnow

        row = self.session.get(Row, key)
        if row is None or row.expires_at <= utcnow():
            return None
        return row.payload

    def put(self, key: str, value: bytes, ttl_sec: int) -> None:
        from sqlalchemy import delete

        from models.db import CarbonCache as Row
        from models.db import utcnow

        expires = utcnow() + timedelta(seconds=ttl_sec)
        with self.session.begin_nested():  # a concurrent writer of the same key must not break the caller
            self.session.merge(Row(key=key, payload=value, expires_at=expires))
        self.session.execute(delete(Row).where(Row.expires_at < utcnow() - timedelta(days=1)))


def _enc_series(s: CarbonSeries | None) -> dict | None:
    if s is None:
        return None
    return {
        "start": s.start.isoformat(),
        "step_sec": s.step.total_seconds(),
        "values": s.values.tolist(),
        "signal": s.signal,
    }


def _dec_series(d: dict | None) -> CarbonSeries | None:
    if d is None:
        return None
    return CarbonSeries(
        datetime.fromisoformat(d["start"]),
        timedelta(seconds=d["step_sec"]),
        np.asarray(d["values"], float),
        signal=d.get("signal", "average"),
    )


def encode_live(live: LiveData) -> bytes:
    return json.dumps(
        {
            "target": live.target,
            "fetched_at": live.fetched_at.isoformat(),
            "forecast": _enc_series(live.forecast),
            "actuals": _enc_series(live.actuals),
        }
    ).encode()


def decode_live(raw: bytes) -> LiveData:
    d = json.loads(raw)
    return LiveData(
        target=d["target"],
        fetched_at=datetime.fromisoformat(d["fetched_at"]),
        forecast=_dec_series(d["forecast"]),
        actuals=_dec_series(d["actuals"]),
    )
