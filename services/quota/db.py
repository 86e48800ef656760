"""Connecting the ledger to its database, the same way for the service and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from services.quota.schema import metadata

# How long a SQLite writer waits for another writer before giving up, in seconds.
SQLITE_BUSY_TIMEOUT_S = 30
# Execution option naming how a SQLite transaction begins; see _begin below.
SQLITE_BEGIN = "emeterai_sqlite_begin"


def create_ledger_engine(url: str, *, create_tables: bool = True, **engine_kwargs: Any) -> Engine:
    """An Engine for the ledger at url (SQLite or PostgreSQL), with its tables created.

    Tables come from metadata.create_all for now; migrations replace that once the schema has
    users whose data must survive a change.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would see its own empty database.
            raise ValueError("the ledger needs a SQLite file, not an in-memory database")
        # The default lives under EMETERAI_DATA_DIR, which a fresh checkout does not have yet.
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **engine_kwargs,
        )
        _configure_sqlite(engine)
    elif parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, pool_pre_ping=True, **engine_kwargs)
    else:
        raise ValueError(f"unsupported ledger database {parsed.get_backend_name()!r}")
    if create_tables:
        metadata.create_all(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN instead of the driver guessing when.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers go on while one writer writes; the setting persists in the file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A write transaction must take the write lock when it starts. A deferred one that read
        # first and writes later fails with SQLITE_BUSY, without waiting, as soon as another writer
        # committed in between; read-only calls opt into DEFERRED so they never queue behind writers.
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")
