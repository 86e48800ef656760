"""What services/common/db.py promises beyond what the auth and quota suites already exercise."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, insert, text
from sqlalchemy.exc import OperationalError, StatementError

from services.common.db import SQLITE_BEGIN, UtcDateTime, create_database_engine

metadata = MetaData()
events = Table("events", metadata, Column("id", Integer, primary_key=True), Column("at", UtcDateTime))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'test.db'}", metadata, sqlite_busy_timeout_s=0.1)
    yield engine
    engine.dispose()


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    engine = create_database_engine(
        "postgresql://nobody@127.0.0.1:1/none", metadata, sqlite_busy_timeout_s=1, create_tables=False
    )
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(events).values(at=datetime(2025, 3, 1, 9, 0)))


def test_sqlite_writers_take_the_lock_at_begin_and_readers_may_defer(engine: Engine) -> None:
    with engine.begin():
        with engine.connect() as reader:
            reader.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            with reader.begin():
                assert reader.execute(text("SELECT count(*) FROM events")).scalar_one() == 0
        # A second writer cannot even begin while the first holds the lock.
        with pytest.raises(OperationalError, match="locked"), engine.begin() as second_writer:
            second_writer.execute(text("SELECT 1"))


def test_sqlite_synchronous_is_left_alone_unless_asked(engine: Engine, tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "bare.db")) as bare:
        bare.execute("PRAGMA journal_mode=WAL")
        [(sqlite_default,)] = bare.execute("PRAGMA synchronous").fetchall()
    normal = create_database_engine(
        f"sqlite:///{tmp_path / 'normal.db'}", metadata, sqlite_busy_timeout_s=1, sqlite_synchronous="NORMAL"
    )
    try:
        with engine.connect() as default_conn, normal.connect() as normal_conn:
            assert default_conn.execute(text("PRAGMA synchronous")).scalar_one() == sqlite_default
            assert normal_conn.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
    finally:
        normal.dispose()
