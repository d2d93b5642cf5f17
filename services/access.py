"""Tenancy: which records a caller may see. ``client`` is the calling tenant, or None for the admin.

Also the client-key lookup behind authentication, with :class:`KeyCache`, a short per-process cache of it."""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, instrumentation, make_transient_to_detached

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


def client_by_key_hash(session: Session, key_hash: str) -> Client | None:
    """The client whose API key hashes to ``key_hash`` (any status), or None."""
    return session.scalar(select(Client).where(Client.api_key_hash == key_hash))


_CLIENT_COLUMNS = tuple(c.key for c in Client.__table__.columns)


class KeyCache:
    """Per-process cache: API-key hash -> the client's row, for ``ttl`` seconds (0 disables it).

    Found clients only (an unknown key is looked up every time), whatever their status, so the caller
    still refuses a suspended one. Every hit is a fresh detached ``Client`` (no ORM instance is shared
    between requests). :meth:`forget` drops a client's entries at once: the API calls it after it commits a
    change of the client's status, key or AWS settings, so in this process the change is effective at
    once; another API process sees it within ``ttl`` seconds. At most ``max_entries`` keys are kept."""

    def __init__(self, ttl: float, max_entries: int = 10_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._epoch = 0  # counts forget() calls: a lookup that raced one is not stored

    def epoch(self) -> int:
        """Take before a lookup, pass to :meth:`put` after it: a row read before a concurrent change was
        committed and forgotten is then not cached (it would stay stale for the TTL)."""
        return self._epoch

    def get(self, key_hash: str) -> Client | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, row = entry
        if time.monotonic() >= expires:
            self._entries.pop(key_hash, None)
            return None
        return _detached(row)

    def put(self, key_hash: str, client: Client, epoch: int) -> None:
        if self.ttl <= 0:
            return
        row = {k: getattr(client, k) for k in _CLIENT_COLUMNS}
        with self._lock:
            if epoch != self._epoch:
                return
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                for k, (expires, _) in list(self._entries.items()):
                    if expires <= now:
                        del self._entries[k]
                while len(self._entries) >= self.max_entries:  # still full: drop the oldest
                    del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (time.monotonic() + self.ttl, row)

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._epoch += 1
            for k, (_, row) in list(self._entries.items()):
                if row["id"] == client_id:
                    self._entries.pop(k, None)


def _detached(row: dict[str, Any]) -> Client:
    """A detached ``Client`` holding ``row`` as loaded state (as a query would build it, without the
    constructor's per-attribute events: this runs on every authenticated request)."""
    c = instrumentation.manager_of_class(Client).new_instance()
    c.__dict__.update({k: list(v) if isinstance(v, list) else v for k, v in row.items()})
    make_transient_to_detached(c)  # a persistent row's copy: never INSERTed if a session ever saw it
    return c
