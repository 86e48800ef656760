"""The database itself refuses what the ledger must never do, whatever code runs against it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.common.settings import QuotaSettings
from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, Order
from services.quota.payments import SandboxProvider
from services.quota.schema import accounts, audit_log, entries, holds, orders, serials

from .conftest import assert_ledger_consistent, sha

Buy = Callable[[str, int], Order]


def test_balances_cannot_go_negative(ledger: Ledger, buy: Buy, engine: Engine) -> None:
    buy("acct-a", 1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.account_id == "acct-a").values(available=-1))
    assert ledger.get_balance("acct-a").available == 1


@pytest.mark.parametrize("table", [entries, audit_log], ids=["journal", "audit log"])
def test_journal_and_audit_log_are_immutable(ledger: Ledger, buy: Buy, engine: Engine, table: object) -> None:
    buy("acct-a", 1)
    with engine.connect() as conn:
        before = conn.execute(select(table)).all()  # type: ignore[call-overload]
    first = next(iter(table.primary_key.columns))  # type: ignore[attr-defined]
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
        conn.execute(update(table).values({first.name: first + 1000}))  # type: ignore[arg-type]
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
        conn.execute(delete(table))  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert conn.execute(select(table)).all() == before  # type: ignore[call-overload]


@pytest.mark.parametrize("table", [accounts, orders, holds, serials], ids=lambda t: t.name)
def test_records_are_never_deleted(ledger: Ledger, buy: Buy, engine: Engine, table: object) -> None:
    buy("acct-a", 1)
    ledger.reserve("acct-a", "stamp-1", sha("doc"), DocumentMetadata(), Channel.RETAIL)
    with pytest.raises(DBAPIError, match="never deleted"), engine.begin() as conn:
        conn.execute(delete(table))  # type: ignore[arg-type]


def test_a_hold_cannot_be_committed_without_a_stamped_hash(ledger: Ledger, buy: Buy, engine: Engine) -> None:
    buy("acct-a", 1)
    hold, _ = ledger.reserve("acct-a", "stamp-1", sha("doc"), DocumentMetadata(), Channel.RETAIL)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            update(holds)
            .where(holds.c.hold_id == hold.hold_id)
            .values(status="committed", resolved_at=datetime.now(UTC))
        )


def test_order_amount_must_be_quantity_times_price(ledger: Ledger, engine: Engine) -> None:
    order, _ = ledger.create_order("acct-a", 2, "key", Channel.RETAIL)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(orders).where(orders.c.order_id == order.order_id).values(amount_idr=1))


def _entry(**values: object) -> dict[str, object]:
    return {
        "unit": "stamp",
        "from_account_id": None,
        "from_book": "stock",
        "to_account_id": "acct-a",
        "to_book": "available",
        "amount": 1,
        "kind": "purchase",
        "channel": "retail",
        "reference": "ord_x",
        "created_at": datetime.now(UTC),
        **values,
    }


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(entries).values(_entry(to_account_id="nobody")))


@pytest.mark.parametrize(
    "bad",
    [
        {"to_book": "payments"},  # a stamp entry into a rupiah book
        {"unit": "idr"},  # rupiah between stamp books
        {"from_account_id": "acct-a", "from_book": "stock"},  # the system's stock owned by an account
        {"to_account_id": None},  # an account book with no account
        {"from_account_id": "acct-a", "from_book": "available"},  # from a book to itself
        {"amount": 0},
    ],
)
def test_an_entry_is_two_books_of_one_unit(
    ledger: Ledger, buy: Buy, engine: Engine, bad: dict[str, object]
) -> None:
    buy("acct-a", 1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(entries).values(_entry(**bad)))


def test_times_come_back_aware_and_in_utc(ledger: Ledger, engine: Engine) -> None:
    jakarta = timezone(timedelta(hours=7))
    moment = datetime(2025, 3, 1, 16, 0, 0, 123456, tzinfo=jakarta)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(account_id="acct-tz", kind="retail", created_at=moment))
    with engine.connect() as conn:
        stored = conn.execute(
            select(accounts.c.created_at).where(accounts.c.account_id == "acct-tz")
        ).scalar_one()
    assert stored == moment and stored.tzinfo == UTC and stored.hour == 9


def test_sqlite_engine_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'nested' / 'quota.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000
    finally:
        engine.dispose()


def test_in_memory_sqlite_and_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        create_ledger_engine("sqlite://")
    with pytest.raises(ValueError, match="unsupported"):
        create_ledger_engine("mysql://localhost/quota")


def test_ledger_from_settings_runs_on_the_laptop_defaults(tmp_path: Path) -> None:
    settings = QuotaSettings(data_dir=tmp_path / "data", unit_price_idr=12_000, hold_ttl_s=60)
    engine = create_ledger_engine(settings.resolved_database_url)
    try:
        ledger = Ledger.from_settings(settings, engine)
        order, _ = ledger.create_order("acct-a", 2, "key", Channel.RETAIL)
        assert order.amount_idr == 24_000
        assert (tmp_path / "data" / "quota.db").exists()
        provider = ledger.payment_provider
        assert isinstance(provider, SandboxProvider)
        assert ledger.confirm_payment("sandbox", *provider.pay(order))[0].paid_at is not None
        ledger.close()
        assert_ledger_consistent(engine)
    finally:
        engine.dispose()
