"""The per-process cache of client-key lookups (``services.access.KeyCache``, ``ORCH_AUTH_CACHE_TTL_SEC``):
a change made through this API process is effective at once; a change it did not make (another API process,
or the database directly) is seen within the TTL, never later."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.db import Client, utcnow
from services import access
from services.access import KeyCache
from tests.support.api import engine_for, is_problem
from tests.support.common import new_client


class Clock:
    """Stands in for ``time.monotonic`` in ``services.access``: the TTL is checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _client(cid: str = "cl_1", status: str = "active") -> Client:
    return Client(
        id=cid,
        name="n",
        status=status,
        api_key_hash="h" * 64,
        api_key_prefix="orch_",
        created_at=utcnow(),
        subnet_ids=["subnet-1"],
    )


def test_cache_hits_until_the_ttl_then_misses(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(access.time, "monotonic", clock.monotonic)
    cache = KeyCache(ttl=5)
    cache.put("hash-a", _client(), cache.epoch())
    first, second = cache.get("hash-a"), cache.get("hash-a")
    assert first is not None and second is not None
    assert first is not second  # every hit is a fresh copy: no ORM instance is shared between requests
    assert first.id == "cl_1" and first.status == "active" and first.subnet_ids == ["subnet-1"]
    first.subnet_ids.append("subnet-2")  # a request changing its copy changes no other request's copy
    assert second.subnet_ids == ["subnet-1"] and cache.get("hash-a").subnet_ids == ["subnet-1"]
    clock.now += 4.9
    assert cache.get("hash-a") is not None
    clock.now += 0.1
    assert cache.get("hash-a") is None
    assert cache.get("unknown") is None


def test_forget_drops_every_key_of_the_client_and_ttl_zero_caches_nothing():
    cache = KeyCache(ttl=60)
    for key, cid in (("hash-a", "cl_1"), ("hash-b", "cl_1"), ("hash-c", "cl_2")):
        cache.put(key, _client(cid), cache.epoch())
    cache.forget("cl_1")
    assert cache.get("hash-a") is None and cache.get("hash-b") is None
    assert cache.get("hash-c") is not None
    off = KeyCache(ttl=0)
    off.put("hash-a", _client(), off.epoch())
    assert off.get("hash-a") is None


def test_a_lookup_that_raced_a_change_is_not_cached():
    """A row read before a suspension was committed and forgotten must not be stored after it."""
    cache = KeyCache(ttl=60)
    epoch = cache.epoch()  # a request starts its lookup (reads the row: still active) ...
    cache.forget("cl_1")  # ... meanwhile the suspension commits and drops the client's entries
    cache.put("hash-a", _client("cl_1"), epoch)  # the stale row arrives late
    assert cache.get("hash-a") is None
    cache.put("hash-a", _client("cl_1", "suspended"), cache.epoch())  # the next lookup is stored
    assert cache.get("hash-a").status == "suspended"


def test_the_cache_is_bounded():
    cache = KeyCache(ttl=60, max_entries=3)
    for i in range(5):
        cache.put(f"hash-{i}", _client(f"cl_{i}"), cache.epoch())
    assert [cache.get(f"hash-{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_a_change_made_elsewhere_is_seen_within_the_ttl(api, api_settings, monkeypatch):
    """Suspension written by another process (here: straight to the DB): the cached lookup may answer for
    at most ``auth_cache_ttl_sec``; past it the key is refused."""
    clock = Clock()
    monkeypatch.setattr(access.time, "monotonic", clock.monotonic)
    cid, h = new_client(api, "elsewhere")
    assert api.get("/v1/artifacts", headers=h).status_code == 200  # looked up, cached
    eng = engine_for(api_settings)
    try:
        with Session(eng) as s, s.begin():
            s.execute(update(Client).where(Client.id == cid).values(status="suspended"))
    finally:
        eng.dispose()
    assert api.get("/v1/artifacts", headers=h).status_code == 200  # still inside the TTL
    clock.now += api_settings.auth_cache_ttl_sec
    assert "suspended" in is_problem(api.get("/v1/artifacts", headers=h), 403)["detail"]


def test_changes_through_this_process_are_effective_at_once(api, admin):
    """Suspension, reactivation and rotation through the API drop the cached lookups at once (the key was
    used, so cached, right before each change)."""
    cid, h = new_client(api, "at-once")
    assert api.get("/v1/artifacts", headers=h).status_code == 200
    assert api.patch(f"/v1/clients/{cid}", json={"status": "suspended"}, headers=admin).status_code == 200
    is_problem(api.get("/v1/artifacts", headers=h), 403)
    assert api.patch(f"/v1/clients/{cid}", json={"status": "active"}, headers=admin).status_code == 200
    assert api.get("/v1/artifacts", headers=h).status_code == 200
    new = api.post(f"/v1/clients/{cid}/rotate-key", headers=admin).json()["api_key"]
    is_problem(api.get("/v1/artifacts", headers=h), 401)
    assert api.get("/v1/artifacts", headers={"X-API-Key": new}).status_code == 200
