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
from services.quota.schema import accounts, holds, ledger_entries, orders

from .conftest import assert_ledger_consistent, sha

Buy = Callable[[str, int], Order]


def test_balances_cannot_go_negative(ledger: Ledger, buy: Buy, engine: Engine) -> None:
    buy("acct-a", 1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.account_id == "acct-a").values(available=-1))
    assert ledger.get_balance("acct-a").available == 1


def test_journal_entries_are_immutable(ledger: Ledger, buy: Buy, engine: Engine) -> None:
    buy("acct-a", 1)
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
        conn.execute(update(ledger_entries).values(quantity=100))
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as conn:
        conn.execute(delete(ledger_entries))
    with engine.connect() as conn:
        assert conn.execute(select(ledger_entries.c.quantity)).scalars().all() == [1]


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


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            insert(ledger_entries).values(
                account_id="nobody",
                from_state="external",
                to_state="available",
                quantity=1,
                kind="purchase",
                channel="retail",
                reference="ord_x",
                created_at=datetime.now(UTC),
            )
        )


def test_times_come_back_aware_and_in_utc(ledger: Ledger, engine: Engine) -> None:
    jakarta = timezone(timedelta(hours=7))
    moment = datetime(2025, 3, 1, 16, 0, 0, 123456, tzinfo=jakarta)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(account_id="acct-tz", created_at=moment))
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
        assert_ledger_consistent(engine)
    finally:
        engine.dispose()
