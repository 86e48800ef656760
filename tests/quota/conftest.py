"""Ledger fixtures: every ledger test runs on SQLite and on a real PostgreSQL.

PostgreSQL gets one fresh database with a random name per test session, dropped at the end; each
test starts from empty tables. After every test the whole ledger is checked against its journal.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.models import PAID_STATUSES, Channel, HoldStatus, Order, State
from services.quota.payments import SandboxProvider
from services.quota.schema import (
    accounts,
    holds,
    ledger_entries,
    metadata,
    orders,
    payments,
    refunds,
    transfers,
)
from tests.conftest import DATABASE_BACKENDS, FakeClock, create_test_database, open_test_engine

WEBHOOK_SECRET = b"test-webhook-secret"
UNIT_PRICE_IDR = 10_000
HOLD_TTL_S = 600
ORDER_TTL_S = 3600


def sha(label: str) -> bytes:
    """A document hash for tests: SHA-256 of a label."""
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from create_test_database("quota")


@pytest.fixture(params=DATABASE_BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = open_test_engine(request, create_ledger_engine, f"sqlite:///{tmp_path / 'quota.db'}", metadata)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def provider(clock: FakeClock) -> SandboxProvider:
    return SandboxProvider(WEBHOOK_SECRET, clock=clock)


@pytest.fixture
def ledger(engine: Engine, clock: FakeClock, provider: SandboxProvider) -> Iterator[Ledger]:
    yield Ledger(
        engine,
        clock,
        payment_provider=provider,
        unit_price_idr=UNIT_PRICE_IDR,
        hold_ttl_s=HOLD_TTL_S,
        order_ttl_s=ORDER_TTL_S,
    )
    # Every scenario ends with the books balancing, whatever it did.
    assert_ledger_consistent(engine)


@pytest.fixture
def buy(ledger: Ledger, provider: SandboxProvider) -> Callable[[str, int], Order]:
    """Buy quantity units for account_id through the sandbox provider, as a payer would."""

    def buy_(account_id: str, quantity: int) -> Order:
        order, _ = ledger.create_order(account_id, quantity, f"buy-{secrets.token_hex(4)}", Channel.RETAIL)
        paid, replayed = ledger.confirm_payment("sandbox", *provider.pay(order))
        assert not replayed
        return paid

    return buy_


def assert_ledger_consistent(engine: Engine) -> None:
    """Check every balance against the records that should have produced it.

    The per-account invariant purchased = available + held + consumed + refunded is checked with
    purchased taken from independent sources (paid orders and transfers, and the journal), not by
    adding up the very columns it is supposed to equal.
    """
    with engine.connect() as conn:
        balance_rows = {row.account_id: row for row in conn.execute(select(accounts))}
        entries = conn.execute(select(ledger_entries)).all()
        order_rows = conn.execute(select(orders)).all()
        hold_rows = conn.execute(select(holds)).all()
        refund_rows = conn.execute(select(refunds)).all()
        transfer_rows = conn.execute(select(transfers)).all()
        payment_rows = conn.execute(select(payments)).all()

    journal: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in entries:
        assert entry.quantity > 0 and entry.from_state != entry.to_state
        journal[entry.account_id][entry.from_state] -= entry.quantity
        journal[entry.account_id][entry.to_state] += entry.quantity

    bought: Counter[str] = Counter()
    for order in order_rows:
        if order.status in PAID_STATUSES:
            bought[order.account_id] += order.quantity
    for transfer in transfer_rows:
        bought[transfer.from_account_id] -= transfer.quantity
        bought[transfer.to_account_id] += transfer.quantity
    refunded: Counter[str] = Counter()
    for refund in refund_rows:
        refunded[refund.account_id] += refund.quantity
    hold_states = Counter((hold.account_id, hold.status) for hold in hold_rows)

    for account_id, row in balance_rows.items():
        states = {
            State.AVAILABLE: row.available,
            State.HELD: row.held,
            State.CONSUMED: row.consumed,
            State.REFUNDED: row.refunded,
        }
        assert all(value >= 0 for value in states.values()), (account_id, states)
        purchased = sum(states.values())
        where = f"account {account_id}"
        for state, value in states.items():
            assert journal[account_id][state] == value, (
                f"{where}: {state} is {value}, journal says {journal[account_id][state]}"
            )
        assert -journal[account_id][State.EXTERNAL] == purchased, f"{where}: journal inflow != purchased"
        assert bought[account_id] == purchased, f"{where}: paid orders and transfers != purchased {purchased}"
        assert refunded[account_id] == row.refunded, f"{where}: refunds != refunded"
        assert hold_states[(account_id, HoldStatus.RESERVED)] == row.held, f"{where}: reserved holds != held"
        assert hold_states[(account_id, HoldStatus.COMMITTED)] == row.consumed, (
            f"{where}: commits != consumed"
        )
    assert set(journal) <= set(balance_rows), "journal entries for an account that does not exist"

    paid_orders = {order.order_id: order for order in order_rows if order.status in PAID_STATUSES}
    assert {payment.order_id for payment in payment_rows} == set(paid_orders), "payments != paid orders"
    for payment in payment_rows:
        assert payment.amount_idr == paid_orders[payment.order_id].amount_idr
    for order in order_rows:
        assert order.refunded_quantity == sum(r.quantity for r in refund_rows if r.order_id == order.order_id)
