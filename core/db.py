"""Database engine and sessions (SQLAlchemy 2). SQLite (WAL) by default, PostgreSQL via psycopg 3.

Concurrency rules the API relies on (see api/deps.py):

- PostgreSQL sessions carry ``lock_timeout``, ``statement_timeout`` and
  ``idle_in_transaction_session_timeout`` (settings ``ORCH_DB_*``), so a request never waits for a row lock
  or a stuck transaction for ever; such a timeout, like a pool timeout, is a 503 with Retry-After
  (:func:`is_busy`). The pool is sized for FastAPI's threadpool (40 threads by default).
- SQLite runs in WAL mode (readers never block the writer) with a busy timeout. We keep pysqlite's default
  transaction handling on purpose: it emits ``BEGIN`` only right before the first INSERT/UPDATE/DELETE, so
  reads run outside a transaction and a write transaction takes the write lock at its first write, waiting
  for it with the busy handler (``sqlite_busy_timeout_sec``). This is what makes concurrent writers queue
  instead of failing: a *deferred* transaction that first reads and later writes would get
  ``SQLITE_BUSY_SNAPSHOT`` at once (no busy wait is possible) whenever another writer committed in between,
  which is the usual source of "database is locked". The remaining requirement is that no request holds
  the write lock across an ``await``: API handlers commit in the threadpool before awaiting anything slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.datadir import make_data_dir
from core.settings import Settings


def normalise_url(url: str) -> str:
    """Accept the usual ``postgresql://`` spelling and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def pg_timeout_options(settings: Settings) -> str:
    """The libpq ``options`` string setting the session timeouts (milliseconds; 0 disables one)."""
    return " ".join(
        [
            f"-c lock_timeout={_ms(settings.db_lock_timeout_sec)}",
            f"-c statement_timeout={_ms(settings.db_statement_timeout_sec)}",
            f"-c idle_in_transaction_session_timeout={_ms(settings.db_idle_in_transaction_timeout_sec)}",
        ]
    )


def make_engine(settings: Settings) -> Engine:
    url = normalise_url(settings.db_url)
    if url.startswith("sqlite"):
        make_data_dir(settings.data_dir)
        busy_ms = _ms(settings.sqlite_busy_timeout_sec)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_sec},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_sec,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        return engine
    # libpq `options` given in the URL (e.g. a search_path) are kept: ours are appended to them.
    from sqlalchemy.engine import make_url

    u = make_url(url)
    given = u.query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else given  # the option may repeat in a URL
    options = " ".join(x for x in (given, pg_timeout_options(settings)) if x)
    u = u.update_query_dict({"options": options})
    return create_engine(
        u,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_sec,
    )


# PostgreSQL SQLSTATEs of a wait that gave up: lock_not_available (lock_timeout), query_canceled
# (statement_timeout), idle_in_transaction_session_timeout; plus serialization/deadlock (safe to retry).
_BUSY_SQLSTATES = {"55P03", "57014", "25P03", "40001", "40P01"}


def is_busy(exc: BaseException) -> bool:
    """True for a database error that means "busy, retry later" (lock/statement/pool timeout, SQLite
    "database is locked"), which the API answers with 503 + Retry-After rather than 500."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, OperationalError):
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _BUSY_SQLSTATES:
            return True
        text = str(orig).lower()
        return "database is locked" in text or "database table is locked" in text
    return False


class Database:
    """Engine + session factory; one per process."""

    def __init__(self, settings: Settings):
        self.engine = make_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
