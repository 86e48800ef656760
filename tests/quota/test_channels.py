"""Channels and owners: distributors' wholesale stock, enterprise children on a parent's pool,
post-paid collectors with a credit limit and a monthly statement. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

from services.common.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from services.quota.errors import InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, HoldStatus, Order, ReleaseReason
from services.quota.schema import entries
from tests.conftest import FakeClock

from .conftest import UNIT_PRICE_IDR, sha

Buy = Callable[[str, int], Order]


def reserve(ledger: Ledger, account_id: str, key: str, channel: Channel = Channel.RETAIL):  # type: ignore[no-untyped-def]
    return ledger.reserve(account_id, key, sha(f"{account_id}-{key}"), DocumentMetadata(), channel)[0]


def test_a_distributor_sells_wholesale_stock_to_its_customers(ledger: Ledger, engine: Engine) -> None:
    ledger.configure_account("dist", Channel.DISTRIBUTOR)
    order, _ = ledger.create_order("dist", 10, "wholesale-1", Channel.DISTRIBUTOR)
    provider = ledger.payment_provider
    ledger.confirm_payment("sandbox", *provider.pay(order))  # type: ignore[attr-defined]
    ledger.transfer_quota("dist", "customer-1", 3, "sell-1", Channel.DISTRIBUTOR)
    hold = reserve(ledger, "customer-1", "stamp-1", Channel.DISTRIBUTOR)
    ledger.commit(hold.hold_id, sha("stamped"))
    assert ledger.get_balance("dist").available == 7
    customer = ledger.get_balance("customer-1")
    assert (customer.available, customer.consumed, customer.purchased) == (2, 1, 3)
    # The channel is on every movement it caused.
    with engine.connect() as conn:
        channels = set(conn.execute(select(entries.c.channel)).scalars())
    assert channels == {Channel.DISTRIBUTOR}


def test_enterprise_children_draw_on_the_parent_pool(ledger: Ledger, buy: Buy) -> None:
    buy("parent", 3)
    ledger.configure_account("parent", Channel.ENTERPRISE)
    child = ledger.configure_account("child", Channel.ENTERPRISE, pool_account_id="parent")
    assert (child.kind, child.pool_account_id) == (Channel.ENTERPRISE, "parent")

    first = reserve(ledger, "child", "stamp-1", Channel.ENTERPRISE)
    second = reserve(ledger, "child", "stamp-2", Channel.ENTERPRISE)
    assert (first.account_id, first.funding_account_id) == ("child", "parent")
    parent = ledger.get_balance("parent")
    assert (parent.available, parent.held) == (1, 2)
    assert ledger.get_balance("child").purchased == 0

    ledger.commit(first.hold_id, sha("stamped-1"))
    ledger.release(second.hold_id, ReleaseReason.SIGNING_FAILED)
    parent = ledger.get_balance("parent")
    assert (parent.available, parent.held, parent.consumed) == (2, 0, 1)
    # The history is the child's: it made the stamps.
    assert [h.hold_id for h in ledger.list_holds("child").items] == [second.hold_id, first.hold_id]
    assert ledger.list_holds("parent").items == []

    reserve(ledger, "parent", "own-1", Channel.ENTERPRISE)
    reserve(ledger, "child", "stamp-3", Channel.ENTERPRISE)
    with pytest.raises(InsufficientQuota):
        reserve(ledger, "child", "stamp-4", Channel.ENTERPRISE)


def test_pool_accounts_do_not_buy_receive_or_nest(ledger: Ledger, buy: Buy) -> None:
    buy("parent", 1)
    ledger.configure_account("child", Channel.ENTERPRISE, pool_account_id="parent")
    with pytest.raises(PreconditionFailed, match="pool of parent"):
        ledger.create_order("child", 1, "order-1", Channel.ENTERPRISE)
    with pytest.raises(PreconditionFailed, match="pool of parent"):
        ledger.transfer_quota("parent", "child", 1, "give-1", Channel.ENTERPRISE)
    with pytest.raises(PreconditionFailed, match="do not nest"):
        ledger.configure_account("grandchild", Channel.ENTERPRISE, pool_account_id="child")
    ledger.configure_account("other", Channel.ENTERPRISE)
    ledger.configure_account("empty-parent", Channel.ENTERPRISE)
    ledger.configure_account("empty-child", Channel.ENTERPRISE, pool_account_id="empty-parent")
    with pytest.raises(PreconditionFailed, match="do not nest"):
        ledger.configure_account("empty-parent", Channel.ENTERPRISE, pool_account_id="other")
    buy("rich", 1)
    with pytest.raises(PreconditionFailed, match="units of its own"):
        ledger.configure_account("rich", Channel.ENTERPRISE, pool_account_id="other")
    with pytest.raises(NotFound):
        ledger.configure_account("orphan", Channel.ENTERPRISE, pool_account_id="nobody")
    with pytest.raises(InvalidInput):
        ledger.configure_account("child", Channel.ENTERPRISE, pool_account_id="child")


def test_a_collector_stamps_on_credit_and_settles_its_statement(ledger: Ledger, clock: FakeClock) -> None:
    limit = 3 * UNIT_PRICE_IDR
    account = ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=limit)
    assert account.credit_limit_idr == limit
    holds = [reserve(ledger, "corp", f"stamp-{n}", Channel.COLLECTOR) for n in range(3)]
    # Stamps in progress count against the limit.
    with pytest.raises(InsufficientQuota, match="credit limit"):
        reserve(ledger, "corp", "stamp-3", Channel.COLLECTOR)
    ledger.commit(holds[0].hold_id, sha("s0"))
    ledger.commit(holds[1].hold_id, sha("s1"))
    ledger.release(holds[2].hold_id, ReleaseReason.SIGNING_FAILED)
    balance = ledger.get_balance("corp")
    assert (balance.available, balance.held, balance.consumed, balance.owed_idr) == (
        0,
        0,
        2,
        2 * UNIT_PRICE_IDR,
    )
    assert balance.purchased == 2  # the released unit went back to stock, unbilled

    statement = ledger.get_statement("corp", "2025-03")
    assert (statement.stamps, statement.amount_idr, statement.outstanding_idr) == (
        2,
        2 * UNIT_PRICE_IDR,
        2 * UNIT_PRICE_IDR,
    )
    assert ledger.get_statement("corp", "2025-04").stamps == 0
    # One unit of credit is left: what is owed counts too.
    third = reserve(ledger, "corp", "stamp-4", Channel.COLLECTOR)
    with pytest.raises(InsufficientQuota):
        reserve(ledger, "corp", "stamp-5", Channel.COLLECTOR)

    settled = ledger.settle_statement("corp", 2 * UNIT_PRICE_IDR, "BCA-2025-03-0001", "march")
    assert ledger.settle_statement("corp", 2 * UNIT_PRICE_IDR, "BCA-2025-03-0001", "march") == settled
    with pytest.raises(Conflict):
        ledger.settle_statement("corp", UNIT_PRICE_IDR, "BCA-2025-03-0001", "march")
    assert ledger.get_balance("corp").owed_idr == 0
    with pytest.raises(PreconditionFailed, match="owes 0"):
        ledger.settle_statement("corp", 1, "BCA-x", "too-much")
    # Paid up: credit is free again.
    ledger.commit(third.hold_id, sha("s4"))
    clock.advance(40 * 86400)
    reserve(ledger, "corp", "stamp-6", Channel.COLLECTOR)
    assert ledger.get_statement("corp", "2025-03").outstanding_idr == UNIT_PRICE_IDR


def test_a_collector_uses_prepaid_units_before_credit(ledger: Ledger, buy: Buy) -> None:
    ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=UNIT_PRICE_IDR)
    buy("corp", 1)
    prepaid = reserve(ledger, "corp", "stamp-1", Channel.COLLECTOR)
    on_credit = reserve(ledger, "corp", "stamp-2", Channel.COLLECTOR)
    ledger.commit(prepaid.hold_id, sha("s1"))
    ledger.commit(on_credit.hold_id, sha("s2"))
    balance = ledger.get_balance("corp")
    assert (balance.consumed, balance.owed_idr, balance.purchased) == (2, UNIT_PRICE_IDR, 2)
    assert ledger.get_statement("corp", "2025-03").stamps == 1


def test_only_collectors_have_credit_and_statements(ledger: Ledger, buy: Buy) -> None:
    with pytest.raises(InvalidInput, match="only a collector"):
        ledger.configure_account("shop", Channel.RETAIL, credit_limit_idr=1000)
    with pytest.raises(InsufficientQuota):
        reserve(ledger, "shop", "stamp-1")
    buy("shop", 1)
    with pytest.raises(NotFound):
        ledger.get_statement("shop", "2025-03")
    with pytest.raises(NotFound):
        ledger.settle_statement("shop", 1, "ref", "key")
    ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=UNIT_PRICE_IDR)
    for period in ("2025-3", "2025-13", "march", ""):
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            ledger.get_statement("corp", period)


def test_configuring_the_same_settings_again_changes_nothing(ledger: Ledger) -> None:
    first = ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=5000)
    assert ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=5000) == first
    assert ledger.get_account("corp") == first
    with pytest.raises(NotFound):
        ledger.get_account("nobody")


def test_a_collector_that_owes_cannot_stop_being_one(ledger: Ledger) -> None:
    ledger.configure_account("corp", Channel.COLLECTOR, credit_limit_idr=UNIT_PRICE_IDR)
    hold = reserve(ledger, "corp", "stamp-1", Channel.COLLECTOR)
    ledger.commit(hold.hold_id, sha("s1"))
    with pytest.raises(PreconditionFailed, match="still owes"):
        ledger.configure_account("corp", Channel.RETAIL)
    assert ledger.get_hold(hold.hold_id).status is HoldStatus.COMMITTED
