"""Connecting the ledger to its database, the same way for the service and the tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from services.common.db import create_database_engine
from services.quota.schema import metadata, seed

# How long a SQLite writer waits for another writer before giving up, in seconds.
SQLITE_BUSY_TIMEOUT_S = 30


def create_ledger_engine(url: str, *, create_tables: bool = True, **engine_kwargs: Any) -> Engine:
    """An Engine for the ledger at url (a SQLite file or PostgreSQL), with its tables created."""
    engine = create_database_engine(
        url,
        metadata,
        sqlite_busy_timeout_s=SQLITE_BUSY_TIMEOUT_S,
        # With WAL a crash of the process loses nothing; only a power cut may drop the last commits.
        sqlite_synchronous="NORMAL",
        create_tables=create_tables,
        **engine_kwargs,
    )
    if create_tables:
        with engine.begin() as conn:
            seed(conn)
    return engine
