"""Orders, the payments that credit them and the refunds that return their unused units.

Functions here run on a connection inside the caller's transaction; Ledger owns the transactions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.common.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from services.quota.balances import available_units, ensure_account, move
from services.quota.errors import InsufficientQuota
from services.quota.models import Channel, EntryKind, Order, OrderStatus, Refund, State
from services.quota.payments import PaymentEvent, PaymentStatus
from services.quota.schema import new_id, orders, payments, refunds


def order_from_row(row: Any, now: datetime) -> Order:
    status = OrderStatus(row.status)
    # An unpaid order past its deadline is expired whether or not the sweeper has marked it yet.
    if status is OrderStatus.AWAITING_PAYMENT and now >= row.expires_at:
        status = OrderStatus.EXPIRED
    return Order(
        order_id=row.order_id,
        account_id=row.account_id,
        quantity=row.quantity,
        unit_price_idr=row.unit_price_idr,
        amount_idr=row.amount_idr,
        status=status,
        payment_provider=row.payment_provider,
        payment_reference=row.payment_reference,
        payment_url=row.payment_url,
        channel=Channel(row.channel),
        created_at=row.created_at,
        expires_at=row.expires_at,
        paid_at=row.paid_at,
        refunded_quantity=row.refunded_quantity,
    )


def find_by_key(conn: Connection, account_id: str, key: str) -> Any:
    query = select(orders).where(orders.c.account_id == account_id, orders.c.idempotency_key == key)
    return conn.execute(query).one_or_none()


def get(conn: Connection, order_id: str, now: datetime, account_id: str = "") -> Order:
    return order_from_row(_row(conn, order_id, account_id, lock=False), now)


def _row(conn: Connection, order_id: str, account_id: str, *, lock: bool) -> Any:
    query = select(orders).where(orders.c.order_id == order_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    # Another account's order is reported exactly like a missing one, so ids cannot be probed.
    if row is None or (account_id and row.account_id != account_id):
        raise NotFound(f"no order {order_id}")
    return row


def insert_order(conn: Connection, order: Order, key: str) -> None:
    ensure_account(conn, order.account_id, order.created_at)
    conn.execute(
        insert(orders).values(
            order_id=order.order_id,
            account_id=order.account_id,
            idempotency_key=key,
            quantity=order.quantity,
            unit_price_idr=order.unit_price_idr,
            amount_idr=order.amount_idr,
            status=order.status,
            payment_provider=order.payment_provider,
            payment_reference=order.payment_reference,
            payment_url=order.payment_url,
            channel=order.channel,
            created_at=order.created_at,
            expires_at=order.expires_at,
            paid_at=None,
            refunded_quantity=0,
        )
    )


def page(
    conn: Connection, account_id: str, before_seq: int | None, limit: int, now: datetime
) -> list[tuple[int, Order]]:
    """Up to limit orders of account_id, newest first, older than before_seq when given."""
    query = select(orders).where(orders.c.account_id == account_id)
    if before_seq is not None:
        query = query.where(orders.c.seq < before_seq)
    rows = conn.execute(query.order_by(orders.c.seq.desc()).limit(limit)).all()
    return [(row.seq, order_from_row(row, now)) for row in rows]


def cancel(conn: Connection, order_id: str, account_id: str, now: datetime) -> Order:
    row = _row(conn, order_id, account_id, lock=True)
    order = order_from_row(row, now)
    if order.status is OrderStatus.CANCELLED:
        return order
    if order.status is not OrderStatus.AWAITING_PAYMENT:
        raise PreconditionFailed(f"order is {order.status}; only an order awaiting payment can be cancelled")
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(status=OrderStatus.CANCELLED))
    return get(conn, order_id, now)


def record_payment(conn: Connection, provider: str, event: PaymentEvent, now: datetime) -> tuple[Order, bool]:
    """Record a verified payment, mark the order paid and credit its units; (order, replayed)."""
    # Lock the order before looking for the event: a concurrent delivery of the same event then
    # either committed already (and is seen below) or waits for this transaction.
    row = _row(conn, event.order_id, "", lock=True)
    seen = conn.execute(
        select(payments.c.order_id).where(
            payments.c.provider == provider, payments.c.event_id == event.event_id
        )
    ).scalar_one_or_none()
    if seen is not None:
        if seen != event.order_id:
            raise InvalidInput(f"payment event {event.event_id} was already used for another order")
        return get(conn, event.order_id, now), True

    order = order_from_row(row, now)
    if order.payment_provider != provider:
        raise InvalidInput(f"order {order.order_id} is not paid through {provider}")
    if event.reference != order.payment_reference:
        raise InvalidInput("payment reference does not match the order")
    if event.amount_idr != order.amount_idr:
        raise InvalidInput(
            f"paid amount {event.amount_idr} does not match the order amount {order.amount_idr}"
        )
    if event.status is not PaymentStatus.SUCCEEDED:
        # Nothing to record: the order stays open and the payer may try again until it expires.
        return order, False
    if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        raise PreconditionFailed(f"order is {order.status}; the payment must be returned to the payer")
    if order.status is not OrderStatus.AWAITING_PAYMENT:
        raise Conflict(f"order {order.order_id} was already paid by another payment")

    conn.execute(
        update(orders).where(orders.c.order_id == order.order_id).values(status=OrderStatus.PAID, paid_at=now)
    )
    conn.execute(
        insert(payments).values(
            payment_id=new_id("pay"),
            provider=provider,
            event_id=event.event_id,
            order_id=order.order_id,
            amount_idr=event.amount_idr,
            reference=event.reference,
            received_at=now,
        )
    )
    move(
        conn,
        account_id=order.account_id,
        from_state=State.EXTERNAL,
        to_state=State.AVAILABLE,
        quantity=order.quantity,
        kind=EntryKind.PURCHASE,
        channel=order.channel,
        reference=order.order_id,
        now=now,
    )
    return get(conn, order.order_id, now), False


def refund(
    conn: Connection,
    *,
    order_id: str,
    account_id: str,
    quantity: int,
    reason: str,
    key: str,
    now: datetime,
) -> tuple[Refund, Order]:
    """Move unused units of a paid order from available to refunded; quantity 0 means all of them."""
    row = _row(conn, order_id, account_id, lock=True)
    earlier = conn.execute(
        select(refunds).where(refunds.c.account_id == row.account_id, refunds.c.idempotency_key == key)
    ).one_or_none()
    if earlier is not None:
        if earlier.order_id != order_id or earlier.requested_quantity != quantity:
            raise Conflict("this idempotency key was used for a different refund")
        return _refund_from_row(earlier), get(conn, order_id, now)

    order = order_from_row(row, now)
    if order.status is OrderStatus.REFUNDED:
        raise PreconditionFailed("every unit of this order was already refunded")
    if order.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        raise PreconditionFailed(f"order is {order.status}; only a paid order can be refunded")
    remaining = order.quantity - order.refunded_quantity
    if quantity > remaining:
        raise InvalidInput(f"only {remaining} units of this order are left to refund")
    units = quantity
    if units == 0:
        # Units are interchangeable, so "unused" means what the account still has available.
        units = min(remaining, available_units(conn, order.account_id, lock=True))
        if units == 0:
            raise InsufficientQuota("no unused units left to refund: they were used or are in use")

    refunded_quantity = order.refunded_quantity + units
    conn.execute(
        update(orders)
        .where(orders.c.order_id == order_id)
        .values(
            refunded_quantity=refunded_quantity,
            status=OrderStatus.REFUNDED
            if refunded_quantity == order.quantity
            else OrderStatus.PARTIALLY_REFUNDED,
        )
    )
    refund_id = new_id("ref")
    conn.execute(
        insert(refunds).values(
            refund_id=refund_id,
            order_id=order_id,
            account_id=order.account_id,
            idempotency_key=key,
            requested_quantity=quantity,
            quantity=units,
            amount_idr=units * order.unit_price_idr,
            reason=reason,
            created_at=now,
        )
    )
    move(
        conn,
        account_id=order.account_id,
        from_state=State.AVAILABLE,
        to_state=State.REFUNDED,
        quantity=units,
        kind=EntryKind.REFUND,
        channel=order.channel,
        reference=refund_id,
        now=now,
    )
    refund_row = conn.execute(select(refunds).where(refunds.c.refund_id == refund_id)).one()
    return _refund_from_row(refund_row), get(conn, order_id, now)


def _refund_from_row(row: Any) -> Refund:
    return Refund(
        refund_id=row.refund_id,
        order_id=row.order_id,
        account_id=row.account_id,
        quantity=row.quantity,
        amount_idr=row.amount_idr,
        reason=row.reason,
        created_at=row.created_at,
    )


def expire(conn: Connection, now: datetime) -> int:
    """Mark unpaid orders past their deadline expired; returns how many."""
    result = conn.execute(
        update(orders)
        .where(orders.c.status == OrderStatus.AWAITING_PAYMENT, orders.c.expires_at <= now)
        .values(status=OrderStatus.EXPIRED)
    )
    return result.rowcount
