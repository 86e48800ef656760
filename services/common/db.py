"""Opening a service's database the same way everywhere: a SQLite file on a laptop, PostgreSQL in
production, with aware UTC datetimes on both."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, Engine, MetaData, create_engine, event, make_url, text
from sqlalchemy.pool import NullPool
from sqlalchemy.types import DateTime, TypeDecorator

# Execution option naming how a SQLite transaction begins ("IMMEDIATE" unless set); see _begin below.
SQLITE_BEGIN = "emeterai_sqlite_begin"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on every backend.

    PostgreSQL returns timestamptz in the session's zone and SQLite drops the zone altogether;
    without this, times read back would differ by database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite compares stored times as text, so every row must use the same zone-less form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_database_engine(
    url: str,
    metadata: MetaData,
    *,
    sqlite_busy_timeout_s: float,
    sqlite_synchronous: str | None = None,
    create_tables: bool = True,
    **engine_kwargs: Any,
) -> Engine:
    """An Engine for url (a SQLite file or PostgreSQL), with metadata's tables created.

    SQLite gets WAL, foreign keys, a busy timeout of sqlite_busy_timeout_s (a writer waits that
    long for another) and write transactions that take the lock at BEGIN; sqlite_synchronous, when
    given, sets PRAGMA synchronous. With create_tables, tables come from metadata.create_all; a
    service whose schema has migrations (the quota ledger's) passes False and runs those instead.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; SQLAlchemy would otherwise look for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would see its own empty database.
            raise ValueError("a SQLite file is needed, not an in-memory database")
        # The default lives under EMETERAI_DATA_DIR, which a fresh checkout does not have yet.
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": sqlite_busy_timeout_s, "check_same_thread": False},
            **engine_kwargs,
        )
        _configure_sqlite(engine, sqlite_busy_timeout_s, sqlite_synchronous)
    elif backend == "postgresql":
        engine = create_engine(parsed, pool_pre_ping=True, **engine_kwargs)
    else:
        raise ValueError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
    if create_tables:
        metadata.create_all(engine)
    return engine


def _use_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Switch the database to WAL unless it is already (the mode persists in the file, so only a
    new file's first connections switch). The switch needs the database to itself, and SQLite
    answers "database is locked" at once, without its busy timeout, when it would otherwise wait
    on another connection that is waiting too (replicas opening a new file together, seen in
    tests/quota/test_migrations.py): such a switch is tried again until the busy timeout."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as refused:
            if "locked" not in str(refused) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine, busy_timeout_s: float, synchronous: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: pysqlite would otherwise defer BEGIN to the
        # first write, leaving the reads before it outside the transaction; _begin emits it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching to WAL takes the database's lock, and without a timeout
        # a process starting beside another one (replicas on a new file) failed at once with
        # "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout_s * 1000)}")
        # WAL lets readers go on while one writer writes; the setting persists in the file.
        _use_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA foreign_keys=ON")
        if synchronous is not None:
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A write transaction must take the write lock when it starts. A deferred one that read
        # first and writes later fails with SQLITE_BUSY, without waiting, as soon as another writer
        # committed in between; with the lock up front a second writer waits instead. Read-only
        # calls may opt into DEFERRED so they never queue behind writers.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def throwaway_database(server_url: str, name_prefix: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database <name_prefix>_<random> on server_url, dropped (with
    any sessions still on it) on leaving. For tests and benchmarks, which must not share state."""
    server = make_url(server_url)
    # AUTOCOMMIT because CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    name = f"{name_prefix}_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
