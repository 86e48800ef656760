"""Fifty clients racing for the last units of one account, on PostgreSQL: ten ledger replicas
(each its own engine and group committer, as separate quota processes would be) with five
callers each. The database's row locks and conditional updates, not luck or timing, keep the books:
every unit is taken at most once and every unit stays accounted for.

Each caller makes exactly one attempt after a barrier releases them together; nothing retries
until it wins, so a test cannot pass by being slow.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from services.common.errors import DomainError
from services.quota.db import create_ledger_engine
from services.quota.errors import InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, Hold, Order, ReleaseReason
from services.quota.payments import SandboxProvider

from .conftest import WEBHOOK_SECRET, assert_ledger_consistent, sha
from .test_concurrency import race

REPLICAS = 10
CALLERS_PER_REPLICA = 5
CLIENTS = REPLICAS * CALLERS_PER_REPLICA
UNITS = 20

# Replicas racing across connections is a PostgreSQL scenario: SQLite has one writer at a time.
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("engine", ["postgresql"], indirect=True)]


@pytest.fixture
def replicas(engine: Engine, ledger: Ledger) -> Iterator[list[Ledger]]:
    """Ledgers on the same PostgreSQL database, each with its own engine, as quota replicas."""
    url = engine.url.render_as_string(hide_password=False)
    engines = [
        create_ledger_engine(url, create_tables=False, pool_size=CALLERS_PER_REPLICA) for _ in range(REPLICAS)
    ]
    ledgers = [Ledger(e, payment_provider=SandboxProvider(WEBHOOK_SECRET)) for e in engines]
    yield ledgers
    for replica, replica_engine in zip(ledgers, engines, strict=True):
        replica.close()
        replica_engine.dispose()


def reserver(replica: Ledger, n: int) -> Callable[[], tuple[Hold, bool]]:
    return lambda: replica.reserve(
        "last-units", f"stamp-{n}", sha(f"doc-{n}"), DocumentMetadata(), Channel.RETAIL
    )


def test_fifty_clients_race_for_the_last_twenty_units(
    replicas: list[Ledger], ledger: Ledger, buy: Callable[[str, int], Order], engine: Engine
) -> None:
    buy("last-units", UNITS)
    results = race([reserver(replicas[n % REPLICAS], n) for n in range(CLIENTS)])
    won = [result[0] for result in results if isinstance(result, tuple)]
    lost = [result for result in results if not isinstance(result, tuple)]
    assert len(won) == UNITS and all(isinstance(error, InsufficientQuota) for error in lost)
    assert len(lost) == CLIENTS - UNITS
    assert len({hold.serial for hold in won}) == UNITS and len({hold.hold_id for hold in won}) == UNITS
    balance = ledger.get_balance("last-units")
    assert (balance.available, balance.held, balance.purchased) == (0, UNITS, UNITS)

    # Then the winners finish, each through some replica: half stamp, half fail and give back.
    outcomes = race(
        [
            (lambda hold=hold, replica=replicas[i % REPLICAS]: replica.commit(hold.hold_id, sha("stamped")))
            if i % 2
            else (
                lambda hold=hold, replica=replicas[i % REPLICAS]: replica.release(
                    hold.hold_id, ReleaseReason.SIGNING_FAILED
                )
            )
            for i, hold in enumerate(won)
        ]
    )
    assert not [outcome for outcome in outcomes if isinstance(outcome, DomainError)]
    balance = ledger.get_balance("last-units")
    assert (balance.available, balance.held, balance.consumed) == (UNITS // 2, 0, UNITS // 2)
    assert_ledger_consistent(engine)


def test_transfers_out_race_reserves_for_the_same_units(
    replicas: list[Ledger], ledger: Ledger, buy: Callable[[str, int], Order], engine: Engine
) -> None:
    buy("last-units", UNITS)
    calls: list[Callable[[], Any]] = []
    for n in range(CLIENTS):
        replica = replicas[n % REPLICAS]
        if n % 2:
            calls.append(reserver(replica, n))
        else:
            calls.append(
                lambda n=n, replica=replica: replica.transfer_quota(
                    "last-units", f"customer-{n}", 1, f"give-{n}", Channel.DISTRIBUTOR
                )
            )
    random.Random(4).shuffle(calls)
    results = race(calls)
    succeeded = [result for result in results if not isinstance(result, DomainError)]
    failed = [result for result in results if isinstance(result, DomainError)]
    assert len(succeeded) == UNITS and all(isinstance(error, InsufficientQuota) for error in failed)
    balance = ledger.get_balance("last-units")
    transferred = sum(1 for result in succeeded if not isinstance(result, tuple))
    assert (balance.available, balance.held, balance.purchased) == (
        0,
        UNITS - transferred,
        UNITS - transferred,
    )
    assert_ledger_consistent(engine)
