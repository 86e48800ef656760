"""The ledger's schema, one Alembic revision at a time.

`upgrade` brings a database to the newest revision; every quota replica calls it at start (through
`create_ledger_engine`), so the upgrade is serialised: PostgreSQL by an advisory lock held for the
whole upgrade transaction, SQLite by the write lock its BEGIN IMMEDIATE takes. Alembic is configured
here in code, so the installed package needs no alembic.ini.

A schema change is a new revision under versions/, written out in full (never derived from
schema.py at run time, so that what a revision does stays fixed once released), with schema.py
changed to match; tests/quota/test_migrations.py fails while the two differ. To draft one:

    python -m services.quota.migrations revision --autogenerate --rev-id 0002 -m "what changes"

against the database in EMETERAI_DATABASE_URL (the laptop's SQLite file by default), upgraded first.
Autogenerate sees neither CHECK constraints nor triggers; write those by hand. On SQLite a table
change is a copy of the table (batch mode), which loses its triggers: create them again.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select

# The advisory lock key every replica takes around an upgrade: any fixed 64-bit number works as
# long as nothing else on the server uses it, so derive one from a name that says whose it is.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"emeterai quota migrations").digest()[:8], signed=True)


class UnversionedLedger(RuntimeError):
    """The database has ledger tables but no revision: Alembic would fail creating them again."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the ledger; commands run on connection (see env.py)."""
    config = Config()
    config.set_main_option("script_location", "services.quota:migrations")
    config.attributes["connection"] = connection
    return config


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other upgrade of the same database runs beside.

    The whole upgrade is that one transaction: on PostgreSQL DDL is transactional, so a failed
    upgrade leaves the schema as it was, and a replica that waited for the lock then finds the
    schema up to date. SQLite's BEGIN IMMEDIATE (see services/common/db.py) takes the write lock.
    """
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # Released by the commit or rollback that ends the transaction, whatever happens.
            connection.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        yield connection


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the ledger's schema at engine to revision; a no-op when it is there already."""
    with migration_connection(engine) as connection:
        # Every replica start lands here: an up-to-date database is answered from the version
        # table alone, without Alembic reading (and compiling) the revision files.
        heads = _current_heads(connection)
        if revision == "head" and heads == (head_revision(),):
            return
        if not heads and inspect(connection).has_table("accounts"):
            raise UnversionedLedger(
                f"{engine.url.render_as_string(hide_password=True)} holds ledger tables made before "
                "migrations existed; such a development database has nothing to keep: delete it"
            )
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the ledger's schema back to revision ("base" drops every table, data included)."""
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database at engine is at; None for an empty database."""
    with engine.connect() as connection:
        heads = _current_heads(connection)
    return heads[0] if heads else None


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


@functools.cache
def head_revision() -> str:
    """The newest revision, the one `upgrade` brings a database to."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the ledger has at least one revision"
    return head
