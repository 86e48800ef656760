"""Ledger fixtures: every ledger test runs on SQLite and on a real PostgreSQL.

PostgreSQL gets one fresh database with a random name per test session, dropped at the end; each
test starts from empty tables. After every test the whole ledger is checked against its journal.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from services.quota.audit import reconcile, verify_chain
from services.quota.db import create_ledger_engine
from services.quota.ledger import Ledger
from services.quota.migrations import upgrade
from services.quota.models import Channel, Order
from services.quota.payments import SandboxProvider
from services.quota.schema import metadata, seed
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
    with engine.begin() as conn:
        # PostgreSQL's tables were emptied, the genesis rows with them.
        seed(conn)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def provider(clock: FakeClock) -> SandboxProvider:
    return SandboxProvider(WEBHOOK_SECRET, clock=clock)


@pytest.fixture
def ledger(
    engine: Engine, clock: FakeClock, provider: SandboxProvider, request: pytest.FixtureRequest
) -> Iterator[Ledger]:
    ledger = Ledger(
        engine,
        clock,
        payment_provider=provider,
        unit_price_idr=UNIT_PRICE_IDR,
        hold_ttl_s=HOLD_TTL_S,
        order_ttl_s=ORDER_TTL_S,
    )
    yield ledger
    ledger.close()
    # Every scenario ends with the books balancing, whatever it did, unless it broke them on purpose.
    if request.node.get_closest_marker("tampers") is None:
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


def empty_ledger(engine: Engine) -> None:
    """Empty every ledger table and start the books again, for a test that plays many scenarios on
    one engine. The guards refuse DELETE, so PostgreSQL truncates and SQLite rebuilds its tables."""
    if engine.dialect.name == "postgresql":
        names = ", ".join(table.name for table in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            seed(conn)
    else:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        metadata.drop_all(engine)
        upgrade(engine)


def assert_ledger_consistent(engine: Engine) -> None:
    """The whole ledger adds up and its audit chain is intact: `emeterai audit reconcile` and
    `emeterai audit verify` would both pass (tests/quota/test_audit.py shows they catch tampering)."""
    with engine.connect() as conn:
        problems = reconcile(conn)
        _, chain_problems = verify_chain(conn)
    assert problems + chain_problems == []
