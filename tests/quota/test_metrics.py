"""The quota service's metrics, scraped over HTTP: reserved holds read from the ledger, and the books'
own reconcile check run periodically. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, update

from services.common.metrics import MetricsServer
from services.quota.ledger import Ledger
from services.quota.metrics import HOLDS, OutstandingHolds, reconcile_periodically
from services.quota.models import Channel, DocumentMetadata, Order, ReleaseReason
from services.quota.schema import accounts
from tests.conftest import FakeClock
from tests.metrics_scrape import Scrape, scrape

from .conftest import sha

Buy = Callable[[str, int], Order]
DISCREPANCIES = "emeterai_ledger_reconcile_discrepancies"
LAST_RUN = "emeterai_ledger_reconcile_last_run_timestamp_seconds"


@pytest.fixture
def metrics_port() -> Iterator[int]:
    server = MetricsServer.start("127.0.0.1:0")
    yield server.port
    server.stop()


def _reserve(ledger: Ledger, key: str) -> str:
    hold, _ = ledger.reserve("acct-a", key, sha(key), DocumentMetadata(), Channel.RETAIL)
    return hold.hold_id


def _holds(port: int) -> tuple[float | None, float | None]:
    scraped = scrape(port)
    return scraped.value("emeterai_holds_outstanding"), scraped.value("emeterai_oldest_hold_age_seconds")


def test_reserved_holds_and_the_age_of_the_oldest_are_read_from_the_ledger(
    ledger: Ledger, buy: Buy, clock: FakeClock, metrics_port: int
) -> None:
    HOLDS.attach(OutstandingHolds(ledger, read_every_s=0))
    assert _holds(metrics_port) == (0, 0)
    buy("acct-a", 5)
    first = _reserve(ledger, "stamp-1")
    clock.advance(90)
    second = _reserve(ledger, "stamp-2")
    _reserve(ledger, "stamp-3")
    clock.advance(30)
    assert _holds(metrics_port) == (3, 120)
    # Resolved holds are no longer outstanding; the oldest is now the second one.
    ledger.commit(first, sha("stamped-1"))
    ledger.release(second, ReleaseReason.SIGNING_FAILED)
    assert _holds(metrics_port) == (1, 30)


def test_holds_are_read_at_most_once_in_a_while_however_often_prometheus_scrapes(
    ledger: Ledger, buy: Buy, metrics_port: int
) -> None:
    moments = [1000.0]
    HOLDS.attach(OutstandingHolds(ledger, read_every_s=5, clock=lambda: moments[0]))
    buy("acct-a", 5)
    _reserve(ledger, "stamp-1")
    assert _holds(metrics_port)[0] == 1
    _reserve(ledger, "stamp-2")
    moments[0] += 4
    assert _holds(metrics_port)[0] == 1
    moments[0] += 1
    assert _holds(metrics_port)[0] == 2


async def _next_reconcile(port: int, after: float) -> Scrape:
    """The first scrape showing a reconcile finished after `after` (Unix seconds)."""
    deadline = time.monotonic() + 30
    while True:
        scraped = await asyncio.to_thread(scrape, port)
        if (scraped.value(LAST_RUN) or 0) > after:
            return scraped
        assert time.monotonic() < deadline, "no reconcile ran"
        await asyncio.sleep(0.05)


@pytest.mark.tampers
async def test_the_periodic_reconcile_finds_balanced_books_and_then_a_changed_balance(
    ledger: Ledger, buy: Buy, engine: Engine, metrics_port: int
) -> None:
    buy("acct-a", 3)
    ledger.commit(_reserve(ledger, "stamp-1"), sha("stamped-1"))
    _reserve(ledger, "stamp-2")
    started = time.time()
    reconciling = asyncio.create_task(reconcile_periodically(ledger, every_s=0.05))
    try:
        balanced = await _next_reconcile(metrics_port, started)
        assert balanced.value(DISCREPANCIES) == 0
        with engine.begin() as conn:
            conn.execute(
                update(accounts)
                .where(accounts.c.account_id == "acct-a")
                .values(available=accounts.c.available + 1)
            )
        # One that may have read the books before the change, then one that started after it.
        ongoing = await _next_reconcile(metrics_port, time.time())
        broken = await _next_reconcile(metrics_port, ongoing.value(LAST_RUN) or 0)
        assert broken.value(DISCREPANCIES) == len(ledger.reconcile()) >= 1
    finally:
        reconciling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reconciling
