"""Apply Alembic migrations programmatically (``orch db upgrade``, ``make dev``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.datadir import make_data_dir
from core.db import normalise_url
from core.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(settings.db_url).replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.db_url.startswith("sqlite"):
        make_data_dir(settings.data_dir)
    command.upgrade(alembic_config(settings), revision)
