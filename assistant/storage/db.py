"""Engines, migrations and sessions for SQLite and PostgreSQL.

SQLite transactions are started by SQLAlchemy, not by the ``sqlite3`` driver (the
documented pysqlite recipe: ``isolation_level = None`` plus a ``begin`` hook). By default
every transaction starts with ``BEGIN IMMEDIATE``, which takes the write lock up front:
a transaction that reads and then writes can otherwise fail with "database is locked"
when another writer got there first, because SQLite cannot upgrade a read lock while a
writer is waiting. Pure readers opt into a plain deferred ``BEGIN`` via
``session_factory(engine, read_only=True)`` so they never queue behind writers (WAL lets
them run alongside a writer).

Within one process, writers also queue on a ``threading.Lock`` before ``BEGIN
IMMEDIATE``: SQLite's busy handler waits by sleeping with back-off, so threads contending
for the write lock sat idle for milliseconds after it was freed (most of a turn's time
under load). A Python lock hands over at once; the busy timeout still covers writers in
other processes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: Execution option read by the SQLite ``begin`` hook: "IMMEDIATE" (default) or "DEFERRED".
SQLITE_BEGIN_OPTION = "assistant_sqlite_begin"

_BEGIN_STATEMENTS = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN DEFERRED"}

_WRITER_WAIT_SECONDS = 10.0

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
    # Deleted rows are overwritten, not left in free pages: an erased customer must not
    # be recoverable from the database file (SECURITY.md #22).
    "PRAGMA secure_delete=ON",
)


def make_engine(url: str, **engine_kwargs: Any) -> Engine:
    """Create an engine for a SQLite or PostgreSQL (psycopg 3) URL.

    SQLite: the parent directory of the database file is created, connections may be
    shared between threads, every connection gets WAL, foreign keys, a 10 s busy
    timeout and ``synchronous=NORMAL``, and transactions begin with ``BEGIN IMMEDIATE``
    (see the module docstring). An in-memory database uses a single shared connection
    so that :func:`migrate` and later sessions see the same data; it is meant for
    single-threaded tests only.

    PostgreSQL: use ``postgresql+psycopg://`` URLs; connections are pre-pinged.

    Args:
        url: A SQLAlchemy database URL.
        **engine_kwargs: Extra :func:`sqlalchemy.create_engine` arguments, merged over
            the defaults; ``connect_args`` is merged key by key. For example
            ``connect_args={"options": "-csearch_path=myschema"}`` puts a PostgreSQL
            engine in its own schema (the tests do this for isolation).

    Returns:
        The configured engine.
    """
    parsed = make_url(url)
    connect_args: dict[str, Any] = dict(engine_kwargs.pop("connect_args", None) or {})
    if parsed.get_backend_name() != "sqlite":
        engine_kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, connect_args=connect_args, **engine_kwargs)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    if not in_memory and not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, **connect_args}
    if in_memory:
        engine_kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(parsed, connect_args=connect_args, **engine_kwargs)
    event.listen(engine, "connect", _on_sqlite_connect)
    writers = _WriterQueue()
    event.listen(engine, "begin", writers.begin)
    event.listen(engine, "reset", writers.reset)
    return engine


def make_command_engine(url: str) -> Engine:
    """An engine for a short-lived command: no pool, so no connection outlives its use."""
    return make_engine(url, poolclass=NullPool)


def _on_sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take BEGIN away from the sqlite3 driver; _on_sqlite_begin emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


_HOLDS_WRITE_LOCK = "assistant_holds_write_lock"


class _WriterQueue:
    """Serialises one engine's ``BEGIN IMMEDIATE`` transactions on a Python lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def begin(self, conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        if mode == "IMMEDIATE" and self._lock.acquire(timeout=_WRITER_WAIT_SECONDS):
            # On timeout, go on without it: SQLite's own busy timeout still applies.
            conn.info[_HOLDS_WRITE_LOCK] = True
        try:
            conn.exec_driver_sql(_BEGIN_STATEMENTS[mode])
        except BaseException:
            self._release(conn.info)
            raise

    def reset(self, dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: Any) -> None:
        # Released when the connection goes back to the pool, after its commit or
        # rollback has finished (the "commit" event fires before the COMMIT runs).
        self._release(record.info)

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS_WRITE_LOCK, False):
            self._lock.release()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the migrations shipped inside this package.

    Args:
        connection: When given, ``env.py`` migrates through this connection (and its
            open transaction) instead of opening its own.

    Returns:
        A config usable with :mod:`alembic.command`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Bring the database schema to the newest revision (``alembic upgrade head``).

    Runs in one transaction on the given engine, so it also works for in-memory and
    temporary databases, and a failed migration leaves nothing half-applied.

    Args:
        engine: An engine from :func:`make_engine`.
    """
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """A session factory whose sessions keep loaded values after commit.

    Args:
        engine: An engine from :func:`make_engine`.
        read_only: On SQLite, start transactions with a deferred ``BEGIN`` instead of
            ``BEGIN IMMEDIATE``; only for sessions that never write. Ignored elsewhere.

    Returns:
        The factory.
    """
    bind = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False)


class EngineStore:
    """Base of the stores: one engine, write sessions and read-only sessions over it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write = session_factory(engine)
        self._read = session_factory(engine, read_only=True)

    def dispose(self) -> None:
        """Close all pooled connections."""
        self._engine.dispose()
