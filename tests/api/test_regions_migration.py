"""Migration 0004_regions on SQLite and PostgreSQL: old rows keep NULL (today's behaviour), new columns
round-trip, and the downgrade removes them again."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from core.db import normalise_url
from core.migrate import alembic_config, upgrade
from tests.support.common import make_settings

NEW = {
    "clients": {"allowed_regions", "region_settings"},
    "job_templates": {"regions", "data_region"},
    "jobs": {"regions"},
    "runs": {"region"},
}


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


@pytest.fixture
def fresh_db_settings(db_url, tmp_path):
    """A database at revision 0003_recurring (own SQLite file, or the session's PostgreSQL schema emptied)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'mig.db'}"
    else:
        import secrets

        import psycopg

        from tests.support.common import PG_BASE, PG_DSN

        schema = f"m_{secrets.token_hex(6)}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    settings = make_settings(tmp_path, database_url=url)
    yield settings
    if not db_url.startswith("sqlite"):
        import psycopg

        from tests.support.common import PG_DSN

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_0004_regions_adds_nullable_columns_and_downgrades(fresh_db_settings):
    settings = fresh_db_settings
    upgrade(settings, "0003_recurring")
    engine = create_engine(normalise_url(settings.db_url))
    try:
        with engine.begin() as c:  # an existing client row from before the migration
            c.execute(
                text(
                    "INSERT INTO clients (id, name, status, api_key_hash, api_key_prefix, created_at, "
                    "region_default) VALUES ('c1', 'n', 'active', 'h', 'p', CURRENT_TIMESTAMP, 'eu-west-1')"
                )
            )
        for table, cols in NEW.items():
            assert not cols & _columns(engine, table)
        upgrade(settings)
        for table, cols in NEW.items():
            assert cols <= _columns(engine, table), table
        with engine.begin() as c:
            row = c.execute(text("SELECT allowed_regions, region_settings FROM clients")).one()
            assert tuple(row) == (None, None)  # NULL: only the home region, as before
            c.execute(
                text("UPDATE clients SET allowed_regions = :a WHERE id = 'c1'"),
                {"a": '["eu-west-1", "eu-west-3"]'},
            )
        engine.dispose()
        command.downgrade(alembic_config(settings), "0003_recurring")
        for table, cols in NEW.items():
            assert not cols & _columns(engine, table), table
        with engine.connect() as c:  # the row survived the downgrade (SQLite rebuilds the table)
            assert c.execute(text("SELECT region_default FROM clients")).scalar_one() == "eu-west-1"
    finally:
        engine.dispose()
