"""Orders with a provider that opens payments over the network: the order intake looks keys up first,
so a retry never opens a second payment (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, func, select

from services.common.errors import Conflict
from services.quota.ledger import Ledger
from services.quota.models import Channel, Order
from services.quota.payments import SandboxProvider
from services.quota.schema import orders
from tests.conftest import FakeClock

from .conftest import UNIT_PRICE_IDR, WEBHOOK_SECRET, assert_ledger_consistent


class RemoteProvider(SandboxProvider):
    """The sandbox, declared a network provider, counting the payments it opens."""

    remote = True

    def __init__(self, *args: object, fail_for: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.opened: list[str] = []
        self._lock = threading.Lock()
        self._fail_for = fail_for

    def create_payment(self, order: Order) -> tuple[str, str]:
        if order.account_id == self._fail_for:
            raise RuntimeError("provider refused the payment")
        with self._lock:
            self.opened.append(order.order_id)
        return super().create_payment(order)


@pytest.fixture
def remote_provider(clock: FakeClock) -> RemoteProvider:
    return RemoteProvider(WEBHOOK_SECRET, clock=clock, fail_for="refused")


@pytest.fixture
def remote_ledger(engine: Engine, clock: FakeClock, remote_provider: RemoteProvider) -> Iterator[Ledger]:
    ledger = Ledger(engine, clock, payment_provider=remote_provider, unit_price_idr=UNIT_PRICE_IDR)
    yield ledger
    ledger.close()


def test_retries_get_the_first_order_and_open_no_second_payment(
    remote_ledger: Ledger, remote_provider: RemoteProvider, engine: Engine
) -> None:
    first, replayed = remote_ledger.create_order("acct-a", 2, "key-1", Channel.RETAIL)
    assert not replayed and remote_provider.opened == [first.order_id]
    again, replayed = remote_ledger.create_order("acct-a", 2, "key-1", Channel.RETAIL)
    assert replayed and again == first
    assert remote_provider.opened == [first.order_id]
    with pytest.raises(Conflict):
        remote_ledger.create_order("acct-a", 3, "key-1", Channel.RETAIL)
    # The same key for another account is another order.
    other, replayed = remote_ledger.create_order("acct-b", 2, "key-1", Channel.RETAIL)
    assert not replayed and other.order_id != first.order_id
    assert_ledger_consistent(engine)


def test_many_orders_at_once_each_get_their_answer(
    remote_ledger: Ledger, remote_provider: RemoteProvider, engine: Engine
) -> None:
    # 40 new orders, each sent three times at once, and one the provider refuses.
    calls = [(f"acct-{n % 7}", f"key-{n}") for n in range(40) for _ in range(3)] + [("refused", "key-x")]
    with ThreadPoolExecutor(32) as pool:
        futures = [
            pool.submit(remote_ledger.create_order_later, account, 1, key, Channel.RETAIL)
            for account, key in calls
        ]
        answers = [future.result() for future in futures]
    outcomes = []
    for (account, key), answer in zip(calls, answers, strict=True):
        error = answer.exception(timeout=30)
        outcomes.append((account, key, error, None if error else answer.result()))
    refused = [error for account, _, error, _ in outcomes if account == "refused"]
    assert len(refused) == 1 and isinstance(refused[0], RuntimeError)
    by_key: dict[tuple[str, str], set[str]] = {}
    fresh = 0
    for account, key, error, result in outcomes:
        if account == "refused":
            continue
        assert error is None
        order, replayed = result
        assert order.account_id == account
        by_key.setdefault((account, key), set()).add(order.order_id)
        fresh += not replayed
    # One order per key, written once, and one payment opened per order: never one for a retry.
    assert all(len(ids) == 1 for ids in by_key.values()) and len(by_key) == 40
    assert fresh == 40
    assert sorted(remote_provider.opened) == sorted(order_id for ids in by_key.values() for order_id in ids)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(orders)).scalar_one() == 40
    assert_ledger_consistent(engine)
