"""Racing callers on real connections: the database, not luck, keeps the books right.

Each thread makes exactly one attempt after a barrier releases them together; nothing retries
until it wins, so a test cannot pass by being slow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from services.common.errors import DomainError
from services.quota.errors import HoldAlreadyResolved, InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, HoldStatus, Order, OrderStatus, ReleaseReason
from services.quota.payments import SandboxProvider

from .conftest import sha

T = TypeVar("T")
Buy = Callable[[str, int], Order]
# Below the PostgreSQL engine's pool (5 + 10 overflow), so threads race on rows, not on connections.
THREADS = 12


def race(calls: list[Callable[[], T]]) -> list[T | DomainError]:
    """Run every call at once, one thread each; results and domain errors in call order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | DomainError:
        barrier.wait(timeout=30)
        try:
            return call()
        except DomainError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=120) for future in futures]


def test_concurrent_reserves_never_overdraw(ledger: Ledger, buy: Buy) -> None:
    units = 5
    buy("acct-a", units)
    results = race(
        [
            lambda n=n: ledger.reserve(
                "acct-a", f"stamp-{n}", sha(f"doc-{n}"), DocumentMetadata(), Channel.RETAIL
            )
            for n in range(THREADS)
        ]
    )
    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if not isinstance(r, tuple)]
    assert len(won) == units
    assert all(isinstance(r, InsufficientQuota) for r in lost) and len(lost) == THREADS - units
    assert len({hold.serial for hold, _ in won}) == units
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held) == (0, units)


def test_concurrent_retries_of_one_reserve_share_one_hold(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", 3)
    results = race(
        [
            lambda: ledger.reserve("acct-a", "same-key", sha("doc"), DocumentMetadata(), Channel.RETAIL)
            for _ in range(THREADS)
        ]
    )
    assert all(isinstance(r, tuple) for r in results), results
    holds = {hold for hold, _ in results}  # type: ignore[misc]
    assert len(holds) == 1
    assert [replayed for _, replayed in results].count(False) == 1  # type: ignore[misc]
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held) == (2, 1)


def test_concurrent_deliveries_of_one_webhook_credit_once(ledger: Ledger, provider: SandboxProvider) -> None:
    order, _ = ledger.create_order("acct-a", 4, "order-1", Channel.RETAIL)
    payload, signature = provider.pay(order)
    results = race([lambda: ledger.confirm_payment("sandbox", payload, signature) for _ in range(THREADS)])
    assert all(isinstance(r, tuple) for r in results), results
    assert {paid.status for paid, _ in results} == {OrderStatus.PAID}  # type: ignore[misc]
    assert [replayed for _, replayed in results].count(False) == 1  # type: ignore[misc]
    assert ledger.get_balance("acct-a").available == 4


def test_commit_racing_release_resolves_the_hold_exactly_once(ledger: Ledger, buy: Buy) -> None:
    buy("acct-a", THREADS)
    holds = [
        ledger.reserve("acct-a", f"stamp-{n}", sha(f"doc-{n}"), DocumentMetadata(), Channel.RETAIL)[0]
        for n in range(THREADS // 2)
    ]
    calls: list[Callable[[], object]] = []
    for hold in holds:
        calls.append(lambda hold=hold: ledger.commit(hold.hold_id, sha("stamped")))
        calls.append(lambda hold=hold: ledger.release(hold.hold_id, ReleaseReason.CANCELLED))
    results = race(calls)
    for index, hold in enumerate(holds):
        commit, release = results[2 * index], results[2 * index + 1]
        final = ledger.get_hold(hold.hold_id)
        if final.status is HoldStatus.COMMITTED:
            assert commit == final and isinstance(release, HoldAlreadyResolved)
        else:
            assert release == final and isinstance(commit, HoldAlreadyResolved)
    balance = ledger.get_balance("acct-a")
    assert balance.held == 0 and balance.consumed + balance.available == THREADS


def test_transfers_in_opposite_directions_do_not_deadlock(ledger: Ledger, buy: Buy) -> None:
    buy("a", THREADS)
    buy("b", THREADS)
    calls = [
        (lambda n=n: ledger.transfer_quota("a", "b", 1, f"a-{n}", Channel.ENTERPRISE))
        if n % 2
        else (lambda n=n: ledger.transfer_quota("b", "a", 1, f"b-{n}", Channel.ENTERPRISE))
        for n in range(THREADS)
    ]
    results = race(calls)
    assert not [r for r in results if isinstance(r, DomainError)]
    assert ledger.get_balance("a").available + ledger.get_balance("b").available == 2 * THREADS
