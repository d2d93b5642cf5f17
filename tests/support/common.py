"""Constants and helpers every test area uses: test settings, the session's S3 credentials, the admin key,
the machine's PostgreSQL, a client made through the API."""

from __future__ import annotations

import os
from pathlib import Path

from core.settings import Settings

S3_ACCESS = "orchtest"
S3_SECRET = "orchtest-secret-key"

ADMIN_KEY = "orch_admin_test_" + "k" * 40

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings for a test: isolated data dir, no env leakage from the developer's shell."""
    for k in list(os.environ):
        if k.startswith("ORCH_"):
            os.environ.pop(k)
    overrides.setdefault("carbon_provider", "embedded")  # the default `auto` would call public APIs
    return Settings(data_dir=tmp_path, **overrides)


def pg_reachable() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


def new_client(api, name: str = "acme") -> tuple[str, dict[str, str]]:
    r = api.post("/v1/clients", json={"name": name}, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], {"X-API-Key": body["api_key"]}
