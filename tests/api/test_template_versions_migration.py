"""Migration 0008_template_versions on SQLite and PostgreSQL: every existing template becomes version 1 (its
fields copied into job_template_versions), existing jobs and runs reference version 1, and the downgrade
removes it all again."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from core.db import normalise_url
from core.migrate import alembic_config, upgrade
from tests.support.common import make_settings


@pytest.fixture
def fresh_db_settings(db_url, tmp_path):
    """An empty database (own SQLite file, or a throw-away schema of the session's PostgreSQL)."""
    if db_url.startswith("sqlite"):
        yield make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'mig.db'}")
        return
    import secrets

    import psycopg

    from tests.support.common import PG_BASE, PG_DSN

    schema = f"m_{secrets.token_hex(6)}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield make_settings(tmp_path, database_url=f"{PG_BASE}?options=-csearch_path%3D{schema}")
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


ROWS = [
    "INSERT INTO clients (id, name, status, api_key_hash, api_key_prefix, created_at) "
    "VALUES ('c1', 'n', 'active', 'h', 'p', CURRENT_TIMESTAMP)",
    "INSERT INTO artifacts (id, client_id, name, version, sha256, size_bytes, entry_point, s3_bucket, "
    "s3_key, created_at) VALUES ('a1', 'c1', 'app.zip', '1', 's', 1, 'main.py', 'b', 'k', CURRENT_TIMESTAMP)",
    "INSERT INTO job_templates (id, client_id, name, app_artifact_id, default_args, fleet_template_id, "
    "expected_runtime_sec, regions, created_at) VALUES ('t1', 'c1', 'etl', 'a1', '{\"x\": 1}', 'm5.large', "
    "600, '[\"eu-west-1\"]', CURRENT_TIMESTAMP)",
    "INSERT INTO jobs (id, client_id, job_template_id, type, risk_mode, weights, args, request_hash, "
    "created_at) VALUES ('j1', 'c1', 't1', 'ONE_TIME', 'NEUTRAL', '{}', '{}', 'h', CURRENT_TIMESTAMP)",
    "INSERT INTO runs (id, job_id, client_id, job_template_id, fleet_template_id, workflow_id, status, "
    "created_at, updated_at, attempts) VALUES ('r1', 'j1', 'c1', 't1', 'm5.large', 'run-r1', 'SUCCEEDED', "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
]


def test_0008_existing_templates_become_version_1_and_downgrade(fresh_db_settings):
    settings = fresh_db_settings
    upgrade(settings, "0005_actuals")
    engine = create_engine(normalise_url(settings.db_url))
    try:
        with engine.begin() as c:
            for sql in ROWS:
                c.execute(text(sql))
        upgrade(settings, "0008_template_versions")
        with engine.begin() as c:
            assert c.execute(text("SELECT version, retired_at FROM job_templates")).one() == (1, None)
            v = c.execute(
                text(
                    "SELECT job_template_id, version, name, default_args, expected_runtime_sec, regions "
                    "FROM job_template_versions"
                )
            ).one()
            assert v[:3] == ("t1", 1, "etl") and v[4] == 600
            assert v[3] in ({"x": 1}, '{"x": 1}') and v[5] in (["eu-west-1"], '["eu-west-1"]')
            assert c.execute(text("SELECT job_template_version, rerun_of FROM jobs")).one() == (1, None)
            assert c.execute(text("SELECT job_template_version FROM runs")).one() == (1,)
        engine.dispose()
        command.downgrade(alembic_config(settings), "0005_actuals")
        insp = inspect(engine)
        assert "job_template_versions" not in insp.get_table_names()
        assert not {"version", "retired_at", "updated_at"} & {
            c["name"] for c in insp.get_columns("job_templates")
        }
        assert "job_template_version" not in {c["name"] for c in insp.get_columns("runs")}
    finally:
        engine.dispose()
