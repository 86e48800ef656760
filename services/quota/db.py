"""Connecting the ledger to its database, the same way for the service and the tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from services.common.db import create_database_engine
from services.quota import migrations
from services.quota.schema import metadata

# How long a SQLite writer waits for another writer before giving up, in seconds.
SQLITE_BUSY_TIMEOUT_S = 30


def create_ledger_engine(url: str, *, create_tables: bool = True, **engine_kwargs: Any) -> Engine:
    """An Engine for the ledger at url (a SQLite file or PostgreSQL).

    With create_tables the schema is brought up to date first: the Alembic revisions not yet
    applied run, one replica at a time (see services/quota/migrations).
    """
    engine = create_database_engine(
        url,
        metadata,
        sqlite_busy_timeout_s=SQLITE_BUSY_TIMEOUT_S,
        # With WAL a crash of the process loses nothing; only a power cut may drop the last commits.
        sqlite_synchronous="NORMAL",
        create_tables=False,
        **engine_kwargs,
    )
    if create_tables:
        try:
            migrations.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine
