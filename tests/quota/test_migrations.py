"""The ledger's Alembic revisions, from an empty database, on SQLite and on a real PostgreSQL.

Every test starts from a database of its own, empty; PostgreSQL ones are created per test and
dropped after it. The schema the revisions build must be exactly the one schema.py declares,
triggers and seed rows included, since the service only ever gets the former and the code is
written against the latter.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, Engine, delete, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from services.cli import main
from services.quota import migrations
from services.quota.audit import reconcile, verify_chain
from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata
from services.quota.payments import SandboxProvider
from services.quota.schema import accounts, audit_log, entries, metadata, seed
from tests.conftest import DATABASE_BACKENDS, ROOT, FakeClock, create_test_database

from .conftest import UNIT_PRICE_IDR, WEBHOOK_SECRET, sha

REPLICAS = 4


@contextlib.contextmanager
def empty_database(backend: str, tmp_path: Path, name: str) -> Iterator[str]:
    """The URL of a new database with nothing in it."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
    else:
        yield from create_test_database("quota")


@pytest.fixture(params=DATABASE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with empty_database(backend, tmp_path, "migrated") as url:
        yield url


@pytest.fixture
def migrated(url: str) -> Iterator[Engine]:
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def reference(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A database made the old way, metadata.create_all (its triggers included) and seed."""
    with empty_database(backend, tmp_path, "reference") as url:
        engine = create_ledger_engine(url, create_tables=False)
        metadata.create_all(engine)
        with engine.begin() as conn:
            seed(conn)
        yield engine
        engine.dispose()


def describe(engine: Engine) -> dict[str, Any]:
    """Everything about the ledger's schema that the database reports, in a comparable form."""
    with engine.connect() as conn:
        inspector = inspect(conn)
        tables: dict[str, Any] = {}
        for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
            tables[table] = {
                "columns": [
                    (c["name"], str(c["type"].compile(conn.dialect)), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table),
                "foreign_keys": _sorted(inspector.get_foreign_keys(table)),
                "unique": _sorted(inspector.get_unique_constraints(table)),
                "indexes": _sorted(inspector.get_indexes(table)),
                "checks": _sorted(inspector.get_check_constraints(table)),
            }
        return {
            "tables": tables,
            "triggers": _triggers(conn),
            "functions": _functions(conn),
            "system_books": conn.execute(text("SELECT * FROM system_books ORDER BY book")).all(),
            "audit_head": conn.execute(text("SELECT * FROM audit_head")).all(),
        }


def _sorted(items: list[Any]) -> list[Any]:
    return sorted((_plain(item) for item in items), key=lambda item: str(item.get("name")))


def _plain(value: Any) -> Any:
    """value with SQL expressions (a partial index's WHERE) as their text, so that == compares them."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, ClauseElement) else value


def _triggers(conn: Connection) -> list[Any]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    else:
        query = (
            "SELECT tgname, tgrelid::regclass::text, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY tgname"
        )
    return [tuple(row) for row in conn.execute(text(query))]


def _functions(conn: Connection) -> list[Any]:
    if conn.dialect.name == "sqlite":
        return []
    query = (
        "SELECT proname, pg_get_functiondef(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'public' ORDER BY proname"
    )
    return [tuple(row) for row in conn.execute(text(query))]


def test_an_empty_database_upgrades_to_exactly_the_declared_schema(
    migrated: Engine, reference: Engine
) -> None:
    with migrated.connect() as conn:
        assert migrations.current_revision(migrated) == migrations.head_revision()
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []

    # Autogenerate compares neither CHECK constraints nor triggers, and only some index options:
    # the reflected schema must equal that of a database made from schema.py directly.
    schema = describe(migrated)
    assert schema == describe(reference)
    assert sorted(schema["tables"]) == sorted(metadata.tables)

    # And, spelled out, what the comparison above would miss if both sides lacked it.
    payments = schema["tables"]["payments"]
    partial = next(i for i in payments["indexes"] if i["name"] == "uq_payments_applied_order_id")
    assert partial["unique"] and partial["column_names"] == ["order_id"]
    assert partial["dialect_options"][f"{migrated.dialect.name}_where"] == "applied"
    for table in metadata.sorted_tables:
        described = schema["tables"][table.name]
        declared_checks = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        assert {c["name"] for c in described["checks"]} == declared_checks
        declared_columns = [(c.name, c.nullable) for c in table.columns]
        assert [(c[0], c[2]) for c in described["columns"]] == declared_columns
    # SQLite: one trigger per forbidden verb; PostgreSQL: one per table, each with its function.
    assert len(schema["triggers"]) == (17 if migrated.dialect.name == "sqlite" else 12)
    assert len(schema["system_books"]) == 3 and len(schema["audit_head"]) == 1


def test_the_migrated_ledger_works_and_refuses_what_it_must(migrated: Engine) -> None:
    clock = FakeClock()
    provider = SandboxProvider(WEBHOOK_SECRET, clock=clock)
    ledger = Ledger(migrated, clock, payment_provider=provider, unit_price_idr=UNIT_PRICE_IDR)
    try:
        order, _ = ledger.create_order("acct-a", 2, "buy-1", Channel.RETAIL)
        ledger.confirm_payment("sandbox", *provider.pay(order))
        hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), DocumentMetadata(), Channel.RETAIL)
        ledger.commit(hold.hold_id, sha("stamped"))
    finally:
        ledger.close()
    assert ledger_problems(migrated) == []
    for table, message in [(entries, "immutable"), (audit_log, "immutable"), (accounts, "never deleted")]:
        with pytest.raises(DBAPIError, match=message), migrated.begin() as conn:
            conn.execute(delete(table))
    assert ledger_problems(migrated) == []


def ledger_problems(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return reconcile(conn) + verify_chain(conn)[1]


def test_upgrading_again_changes_nothing_and_downgrade_undoes_everything(migrated: Engine) -> None:
    before = describe(migrated)
    with migrated.begin() as conn:
        conn.execute(insert(accounts).values(account_id="acct-kept", kind="retail", created_at=FakeClock()()))
    started = time.perf_counter()
    create_ledger_engine(migrated.url.render_as_string(hide_password=False)).dispose()
    # What every replica start pays: a look at alembic_version (generous, for a loaded machine).
    assert time.perf_counter() - started < 2
    # Past the shortcut for an up-to-date database, Alembic itself finds nothing to run.
    with migrations.migration_connection(migrated) as conn:
        command.upgrade(migrations.alembic_config(conn), "head")
    with migrated.connect() as conn:
        assert conn.execute(select(accounts.c.account_id)).scalars().all() == ["acct-kept"]

    migrations.downgrade(migrated, "base")
    assert migrations.current_revision(migrated) is None
    assert set(inspect(migrated).get_table_names()) <= {"alembic_version"}
    with migrated.connect() as conn:
        assert _triggers(conn) == [] and _functions(conn) == []

    migrations.upgrade(migrated)
    assert describe(migrated) == before


def test_a_ledger_made_before_migrations_is_refused_with_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_ledger_engine(url, create_tables=False)
    metadata.create_all(old)
    old.dispose()
    with pytest.raises(migrations.UnversionedLedger, match="delete it"):
        create_ledger_engine(url)
    code, _, err = run(capsys, "db", "upgrade", "--database-url", url)
    assert code == 1 and "made before migrations" in err


def test_replicas_starting_together_on_an_empty_database_all_succeed(url: str) -> None:
    # Separate processes, as replicas are, each importing first and then upgrading on one signal,
    # so their upgrades overlap instead of lining up behind the imports.
    program = (
        "import sys\n"
        "from services.quota.db import create_ledger_engine\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        f"create_ledger_engine({url!r}).dispose()\n"
        "print('upgraded', flush=True)\n"
    )
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    try:
        for replica in replicas:
            assert replica.stdout is not None and replica.stdout.readline() == "ready\n"
        for replica in replicas:
            assert replica.stdin is not None
            replica.stdin.write("go\n")
            replica.stdin.flush()
        outcomes = [replica.communicate(timeout=120) for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()
    for replica, (out, err) in zip(replicas, outcomes, strict=True):
        assert replica.returncode == 0 and out == "upgraded\n", err
    engine = create_ledger_engine(url, create_tables=False)
    try:
        assert migrations.current_revision(engine) == migrations.head_revision()
        assert ledger_problems(engine) == []
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exited.value.code or 0), out, err


def test_the_operator_command_shows_and_upgrades_the_revision(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = migrations.head_revision()
    code, out, _ = run(capsys, "db", "current", "--database-url", url)
    assert code == 0 and "nothing (empty)" in out and "emeterai db upgrade" in out
    code, out, _ = run(capsys, "db", "upgrade", "--database-url", url)
    assert code == 0 and f"at {head} (head), upgraded from empty" in out
    code, out, _ = run(capsys, "db", "upgrade", "--database-url", url)
    assert code == 0 and out.strip().endswith(f"at {head} (head)")
    code, out, _ = run(capsys, "db", "current", "--database-url", url)
    assert code == 0 and out.strip().endswith(f"at {head} (head)")


def test_the_operator_command_defaults_to_the_quota_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMETERAI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMETERAI_DATABASE_URL", raising=False)
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and str(tmp_path / "data" / "quota.db") in out
    code, _, err = run(capsys, "db", "current", "--database-url", "mysql://localhost/quota")
    assert code == 2 and "unsupported database" in err
