"""Orders, payments, refunds and transfers against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from services.common.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
    Unavailable,
)
from services.common.webhooks import sign_webhook
from services.quota.errors import InsufficientQuota
from services.quota.ledger import Ledger
from services.quota.models import Channel, DocumentMetadata, Order, OrderStatus, RefundStatus, ReleaseReason
from services.quota.payments import PaymentStatus, SandboxProvider
from services.quota.schema import entries, payments, refunds
from tests.conftest import FakeClock

from .conftest import ORDER_TTL_S, UNIT_PRICE_IDR, WEBHOOK_SECRET, assert_ledger_consistent, sha

Buy = Callable[[str, int], Order]


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_purchase_credits_once_and_a_redelivered_webhook_is_a_replay(
    ledger: Ledger, provider: SandboxProvider, clock: FakeClock, engine: Engine
) -> None:
    order, replayed = ledger.create_order("acct-a", 3, "order-1", Channel.RETAIL)
    assert not replayed
    assert order.status is OrderStatus.AWAITING_PAYMENT
    assert (order.quantity, order.unit_price_idr, order.amount_idr) == (3, UNIT_PRICE_IDR, 3 * UNIT_PRICE_IDR)
    assert order.payment_provider == "sandbox"
    assert order.payment_reference and order.order_id in order.payment_url
    assert order.expires_at == clock.now + timedelta(seconds=ORDER_TTL_S)
    assert ledger.get_balance("acct-a").purchased == 0

    payload, signature = provider.pay(order)
    clock.advance(30)
    paid, replayed = ledger.confirm_payment("sandbox", payload, signature)
    assert not replayed
    assert paid.status is OrderStatus.PAID and paid.paid_at == clock.now
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.purchased) == (3, 3)

    # The provider retries the same event: nothing moves a second time.
    again, replayed = ledger.confirm_payment("sandbox", payload, signature)
    assert replayed and again == paid
    assert ledger.get_balance("acct-a").available == 3
    assert count(engine, payments) == 1
    assert count(engine, entries) == 2


@pytest.mark.parametrize("forgery", ["tampered body", "wrong secret", "stale", "garbage header"])
def test_a_webhook_that_fails_verification_credits_nothing(
    ledger: Ledger, provider: SandboxProvider, clock: FakeClock, engine: Engine, forgery: str
) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    payload, signature = provider.pay(order)
    if forgery == "tampered body":
        body = json.loads(payload)
        body["order_id"] = "ord_someone_else"
        payload = json.dumps(body).encode()
    elif forgery == "wrong secret":
        signature = sign_webhook(b"not-the-secret", payload, int(clock.now.timestamp()))
    elif forgery == "stale":
        clock.advance(301)
    else:
        signature = "v1=deadbeef"
    with pytest.raises(Unauthenticated):
        ledger.confirm_payment("sandbox", payload, signature)
    assert ledger.get_order(order.order_id).status is OrderStatus.AWAITING_PAYMENT
    assert ledger.get_balance("acct-a").purchased == 0
    assert count(engine, payments) == 0


def test_unknown_provider_and_malformed_body_are_invalid(ledger: Ledger, clock: FakeClock) -> None:
    with pytest.raises(InvalidInput, match="provider"):
        ledger.confirm_payment("paypal", b"{}", "t=1,v1=00")
    body = b'{"event_id": "evt_1", "type": "payment.succeeded"}'
    with pytest.raises(InvalidInput, match="malformed"):
        ledger.confirm_payment(
            "sandbox", body, sign_webhook(WEBHOOK_SECRET, body, int(clock.now.timestamp()))
        )


def test_amount_or_reference_mismatch_is_invalid_and_records_nothing(
    ledger: Ledger, provider: SandboxProvider, engine: Engine
) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    with pytest.raises(InvalidInput, match="amount"):
        ledger.confirm_payment("sandbox", *provider.pay(order, amount_idr=order.amount_idr - 1))
    with pytest.raises(InvalidInput, match="reference"):
        ledger.confirm_payment("sandbox", *provider.pay(replace(order, payment_reference="sbx_other")))
    assert count(engine, payments) == 0
    assert ledger.get_order(order.order_id).status is OrderStatus.AWAITING_PAYMENT


def test_a_failed_payment_leaves_the_order_open(ledger: Ledger, provider: SandboxProvider) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    after, replayed = ledger.confirm_payment("sandbox", *provider.pay(order, status=PaymentStatus.FAILED))
    assert after.status is OrderStatus.AWAITING_PAYMENT and not replayed
    paid, _ = ledger.confirm_payment("sandbox", *provider.pay(order))
    assert paid.status is OrderStatus.PAID


def assert_payment_returned(engine: Engine, provider: SandboxProvider, order: Order, returns: int) -> None:
    """The order's payments that bought nothing went back to the payer, each once, automatically."""
    with engine.connect() as conn:
        rows = conn.execute(select(refunds).where(refunds.c.order_id == order.order_id)).all()
    assert len(rows) == returns
    for row in rows:
        assert (row.quantity, row.amount_idr, row.status) == (0, order.amount_idr, RefundStatus.COMPLETED)
        assert provider.refunds[row.refund_id] == (order.payment_reference, order.amount_idr)


def test_a_second_payment_for_a_paid_order_is_returned_not_credited(
    ledger: Ledger, provider: SandboxProvider, engine: Engine
) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    ledger.confirm_payment("sandbox", *provider.pay(order, event_id="evt_first"))
    second = provider.pay(order, event_id="evt_second")
    after, replayed = ledger.confirm_payment("sandbox", *second)
    assert after.status is OrderStatus.PAID and not replayed
    assert ledger.get_balance("acct-a").available == 2
    assert count(engine, payments) == 2
    assert_payment_returned(engine, provider, order, 1)
    # Its redelivery is a replay: no second return.
    assert ledger.confirm_payment("sandbox", *second)[1]
    assert_payment_returned(engine, provider, order, 1)


def test_order_idempotency_replays_and_conflicts(ledger: Ledger) -> None:
    first, replayed = ledger.create_order("acct-a", 5, "key-1", Channel.RETAIL)
    assert not replayed
    again, replayed = ledger.create_order("acct-a", 5, "key-1", Channel.RETAIL)
    assert replayed and again == first
    with pytest.raises(Conflict):
        ledger.create_order("acct-a", 6, "key-1", Channel.RETAIL)
    with pytest.raises(Conflict):
        ledger.create_order("acct-a", 5, "key-1", Channel.DISTRIBUTOR)
    # Keys belong to an account: another account's identical key is another order.
    other, replayed = ledger.create_order("acct-b", 5, "key-1", Channel.RETAIL)
    assert not replayed and other.order_id != first.order_id


@pytest.mark.parametrize("quantity", [0, -1, 100_001])
def test_order_quantity_must_be_1_to_100000(ledger: Ledger, quantity: int) -> None:
    with pytest.raises(InvalidInput, match="quantity"):
        ledger.create_order("acct-a", quantity, "key", Channel.RETAIL)


def test_largest_order_is_accepted(ledger: Ledger) -> None:
    order, _ = ledger.create_order("acct-a", 100_000, "key", Channel.COLLECTOR)
    assert order.amount_idr == 100_000 * UNIT_PRICE_IDR


def test_cancel_only_unpaid_orders_and_a_late_payment_goes_back(
    ledger: Ledger, provider: SandboxProvider, buy: Buy, engine: Engine
) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    cancelled = ledger.cancel_order(order.order_id, "acct-a")
    assert cancelled.status is OrderStatus.CANCELLED
    assert ledger.cancel_order(order.order_id, "acct-a") == cancelled
    after, _ = ledger.confirm_payment("sandbox", *provider.pay(order))
    assert after.status is OrderStatus.CANCELLED
    assert ledger.get_balance("acct-a").purchased == 0
    assert_payment_returned(engine, provider, order, 1)

    paid = buy("acct-a", 1)
    with pytest.raises(PreconditionFailed, match="paid"):
        ledger.cancel_order(paid.order_id)
    with pytest.raises(NotFound):
        ledger.cancel_order(paid.order_id, "acct-b")


def test_an_order_past_its_deadline_is_expired_and_its_payment_goes_back(
    ledger: Ledger, provider: SandboxProvider, clock: FakeClock, engine: Engine
) -> None:
    order, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    clock.advance(ORDER_TTL_S - 1)
    assert ledger.get_order(order.order_id).status is OrderStatus.AWAITING_PAYMENT
    clock.advance(1)
    assert ledger.get_order(order.order_id).status is OrderStatus.EXPIRED
    with pytest.raises(PreconditionFailed):
        ledger.cancel_order(order.order_id)
    assert ledger.expire_orders() == 1
    assert ledger.expire_orders() == 0
    assert ledger.get_order(order.order_id).status is OrderStatus.EXPIRED
    after, _ = ledger.confirm_payment("sandbox", *provider.pay(order))
    assert after.status is OrderStatus.EXPIRED
    assert ledger.get_balance("acct-a").purchased == 0
    assert_payment_returned(engine, provider, order, 1)


def test_orders_are_private_and_listed_newest_first(ledger: Ledger) -> None:
    made = [ledger.create_order("acct-a", n, f"key-{n}", Channel.RETAIL)[0] for n in range(1, 6)]
    ledger.create_order("acct-b", 1, "key-1", Channel.RETAIL)
    with pytest.raises(NotFound):
        ledger.get_order(made[0].order_id, "acct-b")
    with pytest.raises(NotFound):
        ledger.get_order("ord_nope")
    assert ledger.get_order(made[0].order_id, "acct-a") == made[0]

    first = ledger.list_orders("acct-a", page_size=2)
    second = ledger.list_orders("acct-a", page_size=2, page_token=first.next_page_token)
    third = ledger.list_orders("acct-a", page_size=2, page_token=second.next_page_token)
    listed = [o.order_id for page in (first, second, third) for o in page.items]
    assert listed == [o.order_id for o in reversed(made)]
    assert third.next_page_token == ""
    for token in ("not-a-token", "\x80", "djE6wrI", "djE6" + "OTk5" * 2000):  # non-ASCII, "v1:²", huge
        with pytest.raises(InvalidInput, match="page_token"):
            ledger.list_orders("acct-a", page_token=token)


def test_refund_returns_unused_units_only(ledger: Ledger, buy: Buy) -> None:
    order = buy("acct-a", 5)
    stamped, _ = ledger.reserve("acct-a", "stamp-1", sha("doc-1"), DocumentMetadata(), Channel.RETAIL)
    ledger.commit(stamped.hold_id, sha("stamped-1"))
    pending, _ = ledger.reserve("acct-a", "stamp-2", sha("doc-2"), DocumentMetadata(), Channel.RETAIL)
    assert ledger.get_balance("acct-a").available == 3

    with pytest.raises(InvalidInput, match="left to refund"):
        ledger.refund_order(order.order_id, "acct-a", 6, "too many", "refund-0")
    with pytest.raises(InsufficientQuota):
        ledger.refund_order(order.order_id, "acct-a", 4, "more than available", "refund-0")

    # 0 = every unused unit: the consumed and the held unit stay.
    refund, after = ledger.refund_order(order.order_id, "acct-a", 0, "changed my mind", "refund-1")
    assert (refund.quantity, refund.amount_idr, refund.reason) == (3, 3 * UNIT_PRICE_IDR, "changed my mind")
    assert after.status is OrderStatus.PARTIALLY_REFUNDED and after.refunded_quantity == 3
    balance = ledger.get_balance("acct-a")
    assert (balance.available, balance.held, balance.consumed, balance.refunded) == (0, 1, 1, 3)
    assert balance.purchased == 5

    again, _ = ledger.refund_order(order.order_id, "acct-a", 0, "changed my mind", "refund-1")
    assert again == refund
    with pytest.raises(Conflict):
        ledger.refund_order(order.order_id, "acct-a", 1, "changed my mind", "refund-1")
    with pytest.raises(InsufficientQuota, match="no unused units"):
        ledger.refund_order(order.order_id, "acct-a", 0, "again", "refund-2")

    # The pending stamp fails; its unit comes back and can be refunded too.
    ledger.release(pending.hold_id, ReleaseReason.SIGNING_FAILED)
    last, after = ledger.refund_order(order.order_id, "acct-a", 1, "the rest", "refund-3")
    assert last.quantity == 1 and after.refunded_quantity == 4
    assert after.status is OrderStatus.PARTIALLY_REFUNDED


def test_a_fully_refunded_order_cannot_be_refunded_again(ledger: Ledger, buy: Buy) -> None:
    order = buy("acct-a", 2)
    _, after = ledger.refund_order(order.order_id, "acct-a", 2, "", "refund-1")
    assert after.status is OrderStatus.REFUNDED
    with pytest.raises(PreconditionFailed, match="already refunded"):
        ledger.refund_order(order.order_id, "acct-a", 0, "", "refund-2")


def test_only_a_paid_order_of_the_caller_can_be_refunded(ledger: Ledger, buy: Buy) -> None:
    unpaid, _ = ledger.create_order("acct-a", 2, "order-1", Channel.RETAIL)
    with pytest.raises(PreconditionFailed, match="only a paid order"):
        ledger.refund_order(unpaid.order_id, "acct-a", 0, "", "refund-1")
    paid = buy("acct-a", 2)
    with pytest.raises(NotFound):
        ledger.refund_order(paid.order_id, "acct-b", 0, "", "refund-1")


def test_transfer_moves_available_units_once(ledger: Ledger, buy: Buy) -> None:
    buy("distributor", 5)
    transfer = ledger.transfer_quota("distributor", "customer", 2, "give-1", Channel.DISTRIBUTOR)
    assert (transfer.from_account_id, transfer.to_account_id, transfer.quantity) == (
        "distributor",
        "customer",
        2,
    )
    assert ledger.transfer_quota("distributor", "customer", 2, "give-1", Channel.DISTRIBUTOR) == transfer
    sender, receiver = ledger.get_balance("distributor"), ledger.get_balance("customer")
    assert (sender.available, sender.purchased) == (3, 3)
    assert (receiver.available, receiver.purchased) == (2, 2)

    with pytest.raises(Conflict):
        ledger.transfer_quota("distributor", "customer", 3, "give-1", Channel.DISTRIBUTOR)
    with pytest.raises(InsufficientQuota):
        ledger.transfer_quota("distributor", "customer", 4, "give-2", Channel.DISTRIBUTOR)
    with pytest.raises(InvalidInput, match="same account"):
        ledger.transfer_quota("distributor", "distributor", 1, "give-3", Channel.DISTRIBUTOR)
    # Received units are spent like bought ones.
    hold, _ = ledger.reserve("customer", "stamp-1", sha("doc"), DocumentMetadata(), Channel.DISTRIBUTOR)
    ledger.commit(hold.hold_id, sha("stamped"))
    assert ledger.get_balance("customer").consumed == 1


def test_transfers_both_ways_keep_the_books(ledger: Ledger, buy: Buy) -> None:
    buy("a", 3)
    buy("b", 3)
    ledger.transfer_quota("a", "b", 2, "k", Channel.ENTERPRISE)
    ledger.transfer_quota("b", "a", 5, "k", Channel.ENTERPRISE)
    assert ledger.get_balance("a").available == 6
    assert ledger.get_balance("b").available == 0


def test_unused_accounts_have_an_empty_balance(ledger: Ledger) -> None:
    balance = ledger.get_balance("never-seen")
    assert (balance.available, balance.held, balance.consumed, balance.refunded, balance.purchased) == (
        0,
    ) * 5


class FlakyProvider(SandboxProvider):
    """The sandbox provider with its refund endpoint down until told otherwise."""

    down = True

    def refund_payment(self, payment_reference: str, refund_id: str, amount_idr: int) -> str:
        if self.down:
            raise Unavailable("payment provider timed out")
        return super().refund_payment(payment_reference, refund_id, amount_idr)


def test_a_refund_waits_for_the_provider_and_is_sent_once(engine: Engine, clock: FakeClock) -> None:
    provider = FlakyProvider(WEBHOOK_SECRET, clock=clock)
    ledger = Ledger(engine, clock, payment_provider=provider, unit_price_idr=UNIT_PRICE_IDR)
    try:
        order, _ = ledger.create_order("acct-a", 3, "order-1", Channel.RETAIL)
        ledger.confirm_payment("sandbox", *provider.pay(order))
        refund, after = ledger.refund_order(order.order_id, "acct-a", 2, "not needed", "refund-1")
        # The units are refunded at once; the money waits for the provider.
        assert refund.status is RefundStatus.PENDING and refund.provider_reference == ""
        assert after.refunded_quantity == 2 and ledger.get_balance("acct-a").refunded == 2
        assert ledger.send_pending_refunds() == 0
        provider.down = False
        assert ledger.send_pending_refunds() == 1
        assert ledger.send_pending_refunds() == 0
        assert provider.refunds == {refund.refund_id: (order.payment_reference, 2 * UNIT_PRICE_IDR)}
        again, _ = ledger.refund_order(order.order_id, "acct-a", 2, "not needed", "refund-1")
        assert again.status is RefundStatus.COMPLETED and again.provider_reference.endswith(refund.refund_id)
    finally:
        ledger.close()
    assert_ledger_consistent(engine)
