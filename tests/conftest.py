"""Session fixtures: the real servers every test area shares (SeaweedFS, moto, Temporal dev server, the
machine's PostgreSQL), the API app over them, and scratch dirs the ``local`` driver's apps can reach.

Each server listens on 127.0.0.1 on a free port and is stopped when the session ends. Fixtures of one area
live in that folder's conftest.py; plain helpers live in tests/support/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.devstack import Server, free_port, start_moto, start_seaweedfs, start_temporal
from core.settings import Settings
from tests.support.common import ADMIN_KEY, PG_BASE, PG_DSN, S3_ACCESS, S3_SECRET, make_settings, pg_reachable


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def seaweedfs(session_dir) -> Iterator[Server]:
    server = start_seaweedfs(session_dir / "s3", free_port(), S3_ACCESS, S3_SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_settings(seaweedfs) -> dict[str, str]:
    """ORCH_* values pointing at the session's SeaweedFS."""
    return {
        "s3_endpoint_url": f"http://127.0.0.1:{seaweedfs.ports['s3']}",
        "s3_access_key_id": S3_ACCESS,
        "s3_secret_access_key": S3_SECRET,
        "s3_region": "us-east-1",
    }


@pytest.fixture(scope="session")
def moto_server(session_dir) -> Iterator[Server]:
    server = start_moto(free_port(), session_dir / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server) -> str:
    return f"http://127.0.0.1:{moto_server.ports['http']}"


@pytest.fixture(scope="session")
def temporal_dev_server(session_dir) -> Iterator[Server]:
    server = start_temporal(session_dir / "temporal.db", free_port(), None, session_dir / "temporal.log")
    yield server
    server.stop()


# ---------------------------------------------------------------- databases
@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    """Every DB-backed test runs once on SQLite and once on the machine's PostgreSQL (own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'orchestrator.db'}"
        return
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    import secrets

    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def api_settings(db_url, s3_settings, tmp_path_factory) -> Settings:
    from core.migrate import upgrade

    data_dir = tmp_path_factory.mktemp("data")
    bucket = "orch-" + db_url.split(":", 1)[0].replace("+", "-").replace("sqlite", "lite")[:10]
    settings = make_settings(
        data_dir,
        database_url=db_url,
        admin_api_key=ADMIN_KEY,
        s3_bucket=bucket,
        temporal_address="127.0.0.1:1",
        **s3_settings,
    )
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def api(api_settings):
    """A TestClient over the real app (real DB, real SeaweedFS); Temporal unreachable unless overridden."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(api_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def no_worker_api(api_settings, temporal_dev_server):
    """The real app with the Temporal dev server and no worker on its task queue: jobs are accepted (their
    workflows start) and never run."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings = api_settings.model_copy(
        update={
            "temporal_address": f"127.0.0.1:{temporal_dev_server.ports['grpc']}",
            "temporal_task_queue": "no-worker-here",
        }
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


@pytest.fixture(scope="session")
def open_tmp_root() -> Iterator[Path]:
    """A session scratch dir every uid may traverse (0711), under the system temp dir.

    A root worker runs each ``local`` app under its own uid, which must be able to traverse the data dir's
    parents; pytest's basetemp is root-only (0700, and reset to that by every pytest session), so data dirs
    of stacks that run apps live here instead."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="orch-tests-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def app_tmp(open_tmp_root) -> Path:
    """A dir the apps of the ``local`` driver can write to (files the test reads back: pids, counters):
    world-writable with the sticky bit."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="app-tmp-", dir=open_tmp_root))
    d.chmod(0o1777)
    return d
