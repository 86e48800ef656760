"""Orders, the payments that credit them and the refunds that return their unused units.

Functions here run on a Journal inside the caller's transaction; Ledger owns the transactions and
the calls to the payment provider, which never happen while a transaction is open.

Money is booked beside the units: a payment moves its amount from PAYMENTS to SOLD, a refund moves
it back. A payment that cannot buy anything (its order was cancelled, expired or already paid) is
recorded and returned to the payer automatically, as a refund of no units.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from services.common.db import UtcDateTime
from services.common.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from services.quota.balances import available_units, ensure_account, ensure_accounts, move, new_account
from services.quota.db import ValuesStatement, fresh_requests, insert_rows
from services.quota.errors import InsufficientQuota, LedgerInconsistency
from services.quota.journal import Journal, Side, system
from services.quota.models import Book, Channel, EntryKind, Order, OrderStatus, Refund, RefundStatus
from services.quota.payments import PaymentEvent, PaymentStatus
from services.quota.schema import accounts, new_id, orders, payments, refunds


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


_ORDERS_BY_KEY = ValuesStatement(
    ("d_owner", "d_key"),
    f"SELECT {', '.join(column.name for column in orders.c)} FROM orders "
    "JOIN d ON account_id = d_owner AND idempotency_key = d_key",
    result=tuple(orders.c),
)


def find_by_keys(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The orders holding the given (account id, idempotency key) pairs, by pair."""
    return {(row.account_id, row.idempotency_key): row for row in _ORDERS_BY_KEY.execute(conn, keys)}


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


def insert_order(journal: Journal, order: Order, key: str) -> None:
    conn = journal.conn
    ensure_account(conn, order.account_id, order.created_at, order.channel)
    pool = conn.execute(
        select(accounts.c.pool_account_id).where(accounts.c.account_id == order.account_id)
    ).scalar_one()
    if pool is not None:
        raise PreconditionFailed(f"this account stamps from the pool of {pool}: buy quota for that account")
    conn.execute(insert(orders).values(_order_row(order, key)))
    _audit_created(journal, order)


def _order_row(order: Order, key: str) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "account_id": order.account_id,
        "idempotency_key": key,
        "quantity": order.quantity,
        "unit_price_idr": order.unit_price_idr,
        "amount_idr": order.amount_idr,
        "status": order.status,
        "payment_provider": order.payment_provider,
        "payment_reference": order.payment_reference,
        "payment_url": order.payment_url,
        "channel": order.channel,
        "created_at": order.created_at,
        "expires_at": order.expires_at,
        "paid_at": None,
        "refunded_quantity": 0,
    }


def _audit_created(journal: Journal, order: Order) -> None:
    journal.audit(
        "order.created",
        order.order_id,
        order.account_id,
        {
            "quantity": order.quantity,
            "amount_idr": order.amount_idr,
            "channel": str(order.channel),
            "payment_provider": order.payment_provider,
            "payment_reference": order.payment_reference,
        },
        order.created_at,
    )


def _payment_row(
    payment_id: str, provider: str, event: PaymentEvent, order: Order, applied: bool, now: datetime
) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "provider": provider,
        "event_id": event.event_id,
        "order_id": order.order_id,
        "amount_idr": event.amount_idr,
        "reference": event.reference,
        "applied": applied,
        "received_at": now,
    }


def _journal_payment(
    journal: Journal,
    order: Order,
    payment_id: str,
    provider: str,
    event: PaymentEvent,
    applied: bool,
    now: datetime,
) -> None:
    """The money of a payment received (payments -> sold) and its audit event."""
    journal.entry(
        system(Book.PAYMENTS),
        system(Book.SOLD),
        event.amount_idr,
        kind=EntryKind.PAYMENT,
        channel=order.channel,
        reference=payment_id,
        now=now,
    )
    journal.audit(
        "payment.received",
        payment_id,
        order.account_id,
        {
            "order_id": order.order_id,
            "provider": provider,
            "event_id": event.event_id,
            "amount_idr": event.amount_idr,
            "applied": applied,
        },
        now,
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


def cancel(journal: Journal, order_id: str, account_id: str, now: datetime) -> Order:
    conn = journal.conn
    row = _row(conn, order_id, account_id, lock=True)
    order = order_from_row(row, now)
    if order.status is OrderStatus.CANCELLED:
        return order
    if order.status is not OrderStatus.AWAITING_PAYMENT:
        raise PreconditionFailed(f"order is {order.status}; only an order awaiting payment can be cancelled")
    conn.execute(update(orders).where(orders.c.order_id == order_id).values(status=OrderStatus.CANCELLED))
    journal.audit("order.cancelled", order_id, row.account_id, {}, now)
    return get(conn, order_id, now)


def record_payment(
    journal: Journal, provider: str, event: PaymentEvent, now: datetime
) -> tuple[Order, bool, str | None]:
    """Record a verified payment; if its order awaits payment, mark it paid and credit its units.

    Returns (order, replayed, refund_id): refund_id names the automatic refund of a payment that
    bought nothing, which the caller then sends back through the provider.
    """
    conn = journal.conn
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
        return get(conn, event.order_id, now), True, None

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
        return order, False, None

    applies = order.status is OrderStatus.AWAITING_PAYMENT
    payment_id = new_id("pay")
    if applies:
        # The order's status changes first: a racing delivery of another event for it waits on the
        # row lock above and then finds the order paid.
        conn.execute(
            update(orders)
            .where(orders.c.order_id == order.order_id)
            .values(status=OrderStatus.PAID, paid_at=now)
        )
    conn.execute(insert(payments).values(_payment_row(payment_id, provider, event, order, applies, now)))
    _journal_payment(journal, order, payment_id, provider, event, applies, now)
    if not applies:
        refund_id = _record_refund(
            journal,
            order=order,
            payment_id=payment_id,
            key=f"return:{payment_id}",
            requested=0,
            units=0,
            amount_idr=event.amount_idr,
            reason=f"payment arrived for an order that was {order.status}; returned to the payer",
            now=now,
        )
        return get(conn, order.order_id, now), False, refund_id
    move(
        journal,
        system(Book.STOCK),
        Side(order.account_id, Book.AVAILABLE),
        order.quantity,
        kind=EntryKind.PURCHASE,
        channel=order.channel,
        reference=order.order_id,
        now=now,
    )
    return get(conn, order.order_id, now), False, None


def refund(
    journal: Journal,
    *,
    order_id: str,
    account_id: str,
    quantity: int,
    reason: str,
    key: str,
    now: datetime,
) -> tuple[Refund, Order]:
    """Move unused units of a paid order from available to refunded and book their money to go back
    to the payer; quantity 0 means all of them. The refund is pending until the provider confirms."""
    conn = journal.conn
    row = _row(conn, order_id, account_id, lock=True)
    earlier = conn.execute(
        select(refunds).where(refunds.c.account_id == row.account_id, refunds.c.idempotency_key == key)
    ).one_or_none()
    if earlier is not None:
        if earlier.order_id != order_id or earlier.requested_quantity != quantity:
            raise Conflict("this idempotency key was used for a different refund")
        return refund_from_row(earlier), get(conn, order_id, now)

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
    payment_id = conn.execute(
        select(payments.c.payment_id).where(payments.c.order_id == order_id, payments.c.applied.is_(True))
    ).scalar_one()
    refund_id = _record_refund(
        journal,
        order=order,
        payment_id=payment_id,
        key=key,
        requested=quantity,
        units=units,
        amount_idr=units * order.unit_price_idr,
        reason=reason,
        now=now,
    )
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
    refund_row = conn.execute(select(refunds).where(refunds.c.refund_id == refund_id)).one()
    return refund_from_row(refund_row), get(conn, order_id, now)


def _record_refund(
    journal: Journal,
    *,
    order: Order,
    payment_id: str,
    key: str,
    requested: int,
    units: int,
    amount_idr: int,
    reason: str,
    now: datetime,
) -> str:
    refund_id = new_id("ref")
    if units:
        # First, so that too few available units fail before anything is written.
        move(
            journal,
            Side(order.account_id, Book.AVAILABLE),
            Side(order.account_id, Book.REFUNDED),
            units,
            kind=EntryKind.REFUND,
            channel=order.channel,
            reference=refund_id,
            now=now,
        )
    journal.conn.execute(
        insert(refunds).values(
            refund_id=refund_id,
            order_id=order.order_id,
            payment_id=payment_id,
            account_id=order.account_id,
            idempotency_key=key,
            requested_quantity=requested,
            quantity=units,
            amount_idr=amount_idr,
            reason=reason,
            status=RefundStatus.PENDING,
            provider_reference="",
            created_at=now,
            completed_at=None,
        )
    )
    move(
        journal,
        system(Book.SOLD),
        system(Book.PAYMENTS),
        amount_idr,
        kind=EntryKind.REFUND if units else EntryKind.PAYMENT_RETURN,
        channel=order.channel,
        reference=refund_id,
        now=now,
    )
    journal.audit(
        "refund.created",
        refund_id,
        order.account_id,
        {
            "order_id": order.order_id,
            "payment_id": payment_id,
            "quantity": units,
            "amount_idr": amount_idr,
            "reason": reason,
        },
        now,
    )
    return refund_id


def pending_refund(conn: Connection, refund_id: str) -> tuple[Refund, str, str] | None:
    """A refund whose money has not gone back yet, with its payment's (provider, reference)."""
    row = conn.execute(
        select(refunds, payments.c.provider, payments.c.reference.label("payment_reference"))
        .join(payments, payments.c.payment_id == refunds.c.payment_id)
        .where(refunds.c.refund_id == refund_id, refunds.c.status == RefundStatus.PENDING)
    ).one_or_none()
    if row is None:
        return None
    return refund_from_row(row), row.provider, row.payment_reference


def pending_refund_ids(conn: Connection, limit: int) -> list[str]:
    query = (
        select(refunds.c.refund_id)
        .where(refunds.c.status == RefundStatus.PENDING)
        .order_by(refunds.c.seq)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def complete_refund(journal: Journal, refund_id: str, provider_reference: str, now: datetime) -> Refund:
    """Mark a refund's money as returned; completing a completed refund changes nothing."""
    result = journal.conn.execute(
        update(refunds)
        .where(refunds.c.refund_id == refund_id, refunds.c.status == RefundStatus.PENDING)
        .values(status=RefundStatus.COMPLETED, provider_reference=provider_reference, completed_at=now)
        .returning(*refunds.c)
    )
    row = result.one_or_none()
    if row is None:
        existing = journal.conn.execute(select(refunds).where(refunds.c.refund_id == refund_id)).one_or_none()
        if existing is None:
            raise NotFound(f"no refund {refund_id}")
        return refund_from_row(existing)
    journal.audit(
        "refund.completed", refund_id, row.account_id, {"provider_reference": provider_reference}, now
    )
    return refund_from_row(row)


def refund_from_row(row: Any) -> Refund:
    return Refund(
        refund_id=row.refund_id,
        order_id=row.order_id,
        account_id=row.account_id,
        quantity=row.quantity,
        amount_idr=row.amount_idr,
        reason=row.reason,
        created_at=row.created_at,
        status=RefundStatus(row.status),
        provider_reference=row.provider_reference,
        completed_at=row.completed_at,
    )


def expire(journal: Journal, now: datetime) -> int:
    """Mark unpaid orders past their deadline expired; returns how many."""
    result = journal.conn.execute(
        update(orders)
        .where(orders.c.status == OrderStatus.AWAITING_PAYMENT, orders.c.expires_at <= now)
        .values(status=OrderStatus.EXPIRED)
        .returning(orders.c.order_id, orders.c.account_id)
    )
    expired = result.all()
    for order_id, account_id in expired:
        journal.audit("order.expired", order_id, account_id, {}, now)
    return len(expired)


# Many at once -------------------------------------------------------------------------------
#
# As for holds (see holds.reserve_many): the group committer hands a batch's new orders and
# payments to these together; they take the common case in a few set-based statements and answer
# None for the rest (replays, pooled accounts, late or mismatched payments), which then run one by
# one through insert_order() and record_payment() in the same transaction.


@dataclass(frozen=True)
class NewOrder:
    order: Order
    key: str


@dataclass(frozen=True)
class ReceivedPayment:
    provider: str
    event: PaymentEvent
    now: datetime


_MARK_PAID = ValuesStatement(
    ("d_order", "d_now"),
    "UPDATE orders SET status = 'paid', paid_at = d_now "
    "FROM d WHERE order_id = d_order AND status = 'awaiting_payment' RETURNING order_id",
    {"d_now": UtcDateTime()},
)
_CREDIT_UNITS = ValuesStatement(
    ("d_account", "d_units"),
    "UPDATE accounts SET available = available + d_units FROM d WHERE account_id = d_account "
    "RETURNING account_id",
)


_ACCOUNTS = ValuesStatement(
    ("d_account",), "SELECT account_id, pool_account_id FROM accounts JOIN d ON account_id = d_account"
)


_SEEN_EVENTS = ValuesStatement(
    ("d_provider", "d_event"),
    "SELECT provider, event_id FROM payments JOIN d ON provider = d_provider AND event_id = d_event",
)


def insert_orders(journal: Journal, requests: list[NewOrder]) -> list[tuple[Order, bool] | None]:
    conn = journal.conn
    results: list[tuple[Order, bool] | None] = [None] * len(requests)
    fresh = fresh_requests(
        conn, (orders.c.account_id, orders.c.idempotency_key), [(r.order.account_id, r.key) for r in requests]
    )
    if not fresh:
        return results
    owners = {requests[index].order.account_id: requests[index].order for index in fresh}
    known = {row.account_id: row.pool_account_id for row in _ACCOUNTS.execute(conn, [(a,) for a in owners])}
    # Accounts are made on first use; a concurrent first use elsewhere is skipped, not an error.
    ensure_accounts(
        conn,
        [
            new_account(account_id, order.channel, order.created_at)
            for account_id, order in sorted(owners.items())
            if account_id not in known
        ],
    )
    pooled = {account_id for account_id, pool in known.items() if pool is not None}
    rows = []
    for index in fresh:
        request = requests[index]
        order = request.order
        if order.account_id in pooled:
            continue
        rows.append(_order_row(order, request.key))
        _audit_created(journal, order)
        results[index] = (order, False)
    insert_rows(conn, orders, rows)
    return results


def record_payments(
    journal: Journal, requests: list[ReceivedPayment]
) -> list[tuple[Order, bool, None] | None]:
    conn = journal.conn
    results: list[tuple[Order, bool, None] | None] = [None] * len(requests)
    # One payment per order and per event in the set-based part; the rest one by one, after.
    by_order: dict[str, int] = {}
    events: set[tuple[str, str]] = set()
    for index, request in enumerate(requests):
        event_key = (request.provider, request.event.event_id)
        if request.event.order_id not in by_order and event_key not in events:
            by_order[request.event.order_id] = index
            events.add(event_key)
    rows = {
        row.order_id: row
        for row in conn.execute(
            select(orders)
            .where(orders.c.order_id.in_(sorted(by_order)))
            .order_by(orders.c.order_id)
            .with_for_update()
        )
    }
    seen = {(provider, event_id) for provider, event_id in _SEEN_EVENTS.execute(conn, sorted(events))}
    paying: list[tuple[int, Order]] = []
    for order_id, index in by_order.items():
        request, row = requests[index], rows.get(order_id)
        event = request.event
        if row is None or (request.provider, event.event_id) in seen:
            continue
        order = order_from_row(row, request.now)
        if (
            order.status is not OrderStatus.AWAITING_PAYMENT
            or event.status is not PaymentStatus.SUCCEEDED
            or (order.payment_provider, order.payment_reference, order.amount_idr)
            != (request.provider, event.reference, event.amount_idr)
        ):
            continue
        paying.append((index, order))
    if not paying:
        return results
    paid = sorted((order.order_id, requests[index].now) for index, order in paying)
    marked = set(_MARK_PAID.execute(conn, paid).scalars())
    if len(marked) != len(paying):
        raise LedgerInconsistency("orders locked as awaiting payment changed under the lock")
    credits: Counter[str] = Counter()
    payment_rows = []
    for index, order in paying:
        request = requests[index]
        payment_id = new_id("pay")
        payment_rows.append(
            _payment_row(payment_id, request.provider, request.event, order, True, request.now)
        )
        credits[order.account_id] += order.quantity
        _journal_payment(journal, order, payment_id, request.provider, request.event, True, request.now)
        journal.entry(
            system(Book.STOCK),
            Side(order.account_id, Book.AVAILABLE),
            order.quantity,
            kind=EntryKind.PURCHASE,
            channel=order.channel,
            reference=order.order_id,
            now=request.now,
        )
        results[index] = (replace(order, status=OrderStatus.PAID, paid_at=request.now), False, None)
    insert_rows(conn, payments, payment_rows)
    if len(_CREDIT_UNITS.execute(conn, sorted(credits.items())).all()) != len(credits):
        raise LedgerInconsistency("paid orders whose accounts do not exist")
    return results
