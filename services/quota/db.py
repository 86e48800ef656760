"""Connecting the ledger to its database, the same way for the service and the tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    TextClause,
    TextualSelect,
    bindparam,
    select,
    text,
    tuple_,
)
from sqlalchemy.types import TypeEngine

from services.common.db import create_database_engine
from services.quota import migrations
from services.quota.schema import metadata

# How long a SQLite writer waits for another writer before giving up, in seconds.
SQLITE_BUSY_TIMEOUT_S = 30
# Compiled statements kept per engine. The set-based statements of group commit differ by their
# number of rows (a few kinds times up to a batch's size each), more than SQLAlchemy's default 500
# holds; recompiling them on every batch cost a tenth of the quota service's CPU.
QUERY_CACHE_SIZE = 5000


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
        **{"query_cache_size": QUERY_CACHE_SIZE, **engine_kwargs},
    )
    if create_tables:
        try:
            migrations.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


class ValuesStatement:
    """`WITH d(columns) AS (VALUES ...) <body>`: one statement for many rows.

    Its text depends only on the number of rows, so it is built once per count and reused; building
    a bound parameter per value per batch cost more than the database did.
    """

    _MAX_CACHED = 256

    def __init__(
        self,
        columns: tuple[str, ...],
        body: str,
        types: dict[str, TypeEngine[Any]] | None = None,
        result: tuple[ColumnElement[Any], ...] = (),
    ) -> None:
        self._columns = columns
        self._body = body
        self._types = types or {}
        self._result = result
        self._by_count: dict[int, TextClause | TextualSelect] = {}

    def __call__(self, rows: list[tuple[Any, ...]]) -> tuple[TextClause | TextualSelect, dict[str, Any]]:
        count = len(rows)
        statement = self._by_count.get(count)
        if statement is None:
            tuples = ", ".join(
                "(" + ", ".join(f":{column}_{number}" for column in self._columns) + ")"
                for number in range(count)
            )
            clause = text(f"WITH d({', '.join(self._columns)}) AS (VALUES {tuples}) {self._body}")
            typed = [
                bindparam(f"{column}_{number}", type_=self._types[column])
                for number in range(count)
                for column in self._columns
                if column in self._types
            ]
            if typed:
                clause = clause.bindparams(*typed)
            statement = clause.columns(*self._result) if self._result else clause
            if len(self._by_count) < self._MAX_CACHED:
                self._by_count[count] = statement
        params = {
            f"{column}_{number}": value
            for number, row in enumerate(rows)
            for column, value in zip(self._columns, row, strict=True)
        }
        return statement, params


def fresh_requests(
    conn: Connection, columns: tuple[Column[str], Column[str]], keys: list[tuple[str, str]]
) -> list[int]:
    """Of a batch's requests, given their (account, idempotency key) in order, the indexes of those
    to run set-based: the first request of each key that the table does not hold yet. The others
    (retries racing their original, keys already used) run one by one and replay or conflict."""
    firsts: dict[tuple[str, str], int] = {}
    for index, key in enumerate(keys):
        firsts.setdefault(key, index)
    existing = {
        (account_id, key)
        for account_id, key in conn.execute(select(*columns).where(tuple_(*columns).in_(list(firsts))))
    }
    return [index for key, index in firsts.items() if key not in existing]
