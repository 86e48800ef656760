"""Connecting the ledger to its database, the same way for the service and the tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    CursorResult,
    Dialect,
    Engine,
    Table,
    TextClause,
    TextualSelect,
    bindparam,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
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
# Connections one replica keeps open: its writers', the order intake's and the readers'. A caller
# beyond them waits for one rather than opening another, which costs a new server process on
# PostgreSQL and, closed again on return, churned under load.
POOL_SIZE = 16


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
        **{"query_cache_size": QUERY_CACHE_SIZE, "pool_size": POOL_SIZE, "max_overflow": 0, **engine_kwargs},
    )
    if create_tables:
        try:
            migrations.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


class ValuesStatement:
    """A statement over a set of rows, `d(columns)`: one statement and one round trip for a batch.

    On PostgreSQL the rows travel as one array per column, unnested into d, so the text never
    changes: it is parsed and planned once per connection (psycopg prepares what it runs often).
    SQLite has no arrays; there d is `VALUES (...), (...)` with a bound parameter per value, and the
    text, built once per number of rows, is cached.
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
        self._unnested: dict[tuple[str, ...], TextClause | TextualSelect] = {}

    def execute(self, conn: Connection, rows: list[tuple[Any, ...]]) -> CursorResult[Any]:
        if conn.dialect.name == "postgresql":
            arrays = [list(values) for values in zip(*rows, strict=True)]
            statement = self._unnest([_array_type(values) for values in arrays])
            params = {f"{column}_a": array for column, array in zip(self._columns, arrays, strict=True)}
            return conn.execute(statement, params)
        return conn.execute(*self._values(rows))

    def _unnest(self, array_types: list[str]) -> TextClause | TextualSelect:
        key = tuple(array_types)
        statement = self._unnested.get(key)
        if statement is None:
            unnested = ", ".join(
                f"CAST(:{column}_a AS {array_type}[])"
                for column, array_type in zip(self._columns, array_types, strict=True)
            )
            columns = ", ".join(self._columns)
            clause = text(f"WITH d({columns}) AS (SELECT * FROM unnest({unnested})) {self._body}")
            statement = self._unnested[key] = clause.columns(*self._result) if self._result else clause
        return statement

    def _values(self, rows: list[tuple[Any, ...]]) -> tuple[TextClause | TextualSelect, dict[str, Any]]:
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


# PostgreSQL array element types for the Python values a ValuesStatement column holds.
_ARRAY_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOLEAN"),  # before int: a bool is an int
    (int, "BIGINT"),
    (str, "TEXT"),
    (bytes, "BYTEA"),
    (datetime, "TIMESTAMPTZ"),
)


def _array_type(values: list[Any]) -> str:
    sample = next((value for value in values if value is not None), "")
    for python_type, array_type in _ARRAY_TYPES:
        if isinstance(sample, python_type):
            return array_type
    raise TypeError(f"no array type for {type(sample).__name__}")


def insert_rows(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, skip_existing: bool = False
) -> None:
    """Insert rows (dicts with the same keys) into table in one statement.

    On PostgreSQL a plain insert is a COPY, whose rows psycopg formats in C, and one with
    skip_existing is `INSERT ... SELECT FROM unnest(one array per column) ON CONFLICT DO NOTHING`;
    either is a single statement whatever the count, where an executemany runs the INSERT once per
    row. SQLite's executemany is already a loop in C. With skip_existing, rows whose key exists
    already are left out.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        statement = sqlite.insert(table)
        conn.execute(statement.on_conflict_do_nothing() if skip_existing else statement, rows)
        return
    names = tuple(rows[0])
    columns = []
    for name in names:
        values = [row[name] for row in rows]
        process = table.c[name].type.bind_processor(conn.dialect)
        columns.append([process(value) for value in values] if process else values)
    if skip_existing:
        statement = _unnest_insert(conn.dialect, table, names)
        conn.execute(statement, {f"c{index}": values for index, values in enumerate(columns)})
        return
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(sql) as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    except dbapi_error as error:
        # As SQLAlchemy raises for its own statements (IntegrityError for a lost uniqueness race),
        # so callers handle one kind of error.
        raise DBAPIError.instance(sql, None, error, dbapi_error, dialect=conn.dialect) from error


_UNNEST_INSERTS: dict[tuple[str, tuple[str, ...]], TextClause] = {}


def _unnest_insert(dialect: Dialect, table: Table, names: tuple[str, ...]) -> TextClause:
    key = (table.name, names)
    statement = _UNNEST_INSERTS.get(key)
    if statement is None:
        arrays = ", ".join(
            f"CAST(:c{index} AS {table.c[name].type.compile(dialect=dialect)}[])"
            for index, name in enumerate(names)
        )
        statement = _UNNEST_INSERTS[key] = text(
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING"
        )
    return statement


_EXISTING_KEYS: dict[tuple[str, str, str], ValuesStatement] = {}


def fresh_requests(
    conn: Connection, columns: tuple[Column[str], Column[str]], keys: list[tuple[str, str]]
) -> list[int]:
    """Of a batch's requests, given their (account, idempotency key) in order, the indexes of those
    to run set-based: the first request of each key that the table does not hold yet. The others
    (retries racing their original, keys already used) run one by one and replay or conflict."""
    firsts: dict[tuple[str, str], int] = {}
    for index, key in enumerate(keys):
        firsts.setdefault(key, index)
    owner, key_column = columns
    name = (owner.table.name, owner.name, key_column.name)  # type: ignore[attr-defined]
    statement = _EXISTING_KEYS.get(name)
    if statement is None:
        statement = _EXISTING_KEYS[name] = ValuesStatement(
            ("d_owner", "d_key"),
            f"SELECT {name[1]}, {name[2]} FROM {name[0]} JOIN d ON {name[1]} = d_owner AND {name[2]} = d_key",
        )
    existing = {(owner_id, key) for owner_id, key in statement.execute(conn, list(firsts))}
    return [index for key, index in firsts.items() if key not in existing]
