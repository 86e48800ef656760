"""The audit: a hash-chained log of every ledger event, and the checks that the books add up.

Each event's hash covers the previous event's hash, its position and its facts, so changing,
removing or reordering anything already logged breaks every hash after it; the head row holds the
last hash, so cutting events off the end shows too. `verify_chain` recomputes the chain and
`reconcile` checks the balances against the journal and against the records that caused them.
Both return the discrepancies they find, named, and an empty list when all is well; they read only.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from services.quota.models import PAID_STATUSES, Book, HoldStatus, SerialStatus, Unit
from services.quota.schema import (
    GENESIS_HASH,
    accounts,
    audit_head,
    audit_log,
    entries,
    holds,
    orders,
    payments,
    refunds,
    serials,
    settlements,
    system_books,
    transfers,
)

_CHUNK = 5000
# What each hold status means for its serial.
SERIAL_STATUS_OF_HOLD = {
    HoldStatus.RESERVED: SerialStatus.RESERVED,
    HoldStatus.COMMITTED: SerialStatus.STAMPED,
    HoldStatus.RELEASED: SerialStatus.VOID,
}


def event_hash(
    previous: bytes,
    *,
    seq: int,
    kind: str,
    subject: str,
    account_id: str | None,
    payload: str,
    created_at: datetime,
) -> bytes:
    """SHA-256 over the previous hash and this event's fields, in a fixed, unambiguous encoding."""
    fields = [seq, kind, subject, account_id, payload, created_at.isoformat(timespec="microseconds")]
    return hashlib.sha256(previous + json.dumps(fields, separators=(",", ":")).encode()).digest()


def _events(conn: Connection) -> Iterator[Any]:
    result = conn.execution_options(yield_per=_CHUNK).execute(select(audit_log).order_by(audit_log.c.seq))
    yield from result


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that sees the ledger as of one moment, so a live ledger's checks are not thrown
    by writes landing between their queries (PostgreSQL: REPEATABLE READ; SQLite: a WAL read
    transaction is one snapshot already)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def verify_chain(conn: Connection) -> tuple[int, list[str]]:
    """Recompute the audit chain; (events checked, discrepancies)."""
    problems: list[str] = []
    expected_seq, previous = 1, GENESIS_HASH
    count = 0
    for event in _events(conn):
        count += 1
        seq = event.seq
        if seq != expected_seq:
            problems.append(f"audit event {expected_seq} is missing (next present is {seq})")
            expected_seq = seq
        if bytes(event.prev_hash) != previous:
            problems.append(f"audit event {seq} does not follow event {seq - 1}: its previous hash differs")
        recomputed = event_hash(
            bytes(event.prev_hash),
            seq=seq,
            kind=event.kind,
            subject=event.subject,
            account_id=event.account_id,
            payload=event.payload,
            created_at=event.created_at,
        )
        if recomputed != bytes(event.hash):
            problems.append(f"audit event {seq} ({event.kind} {event.subject}) was altered: its hash differs")
        previous = bytes(event.hash)
        expected_seq = seq + 1
    head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).one_or_none()
    if head is None:
        problems.append("the audit chain has no head row")
    elif (head.seq, bytes(head.hash)) != (expected_seq - 1, previous):
        problems.append(
            f"the audit head says the chain ends at event {head.seq}, but the log ends at {expected_seq - 1}"
            " with another hash: events were removed or added past the head"
        )
    return count, problems


def reconcile(conn: Connection) -> list[str]:
    """Check that the books add up; the discrepancies found, each naming what and where.

    For every account: each book equals what the journal moved in and out of it; purchased =
    available + held + consumed + refunded, with purchased taken from the records (paid orders,
    transfers, a collector's stamps on credit), not from the balances; held and consumed match its
    holds, refunded its refunds. In total, every unit and every rupiah sums to zero over all books.
    Every serial has exactly one hold, in the matching state, bound to the same hashes.
    """
    problems: list[str] = []
    problems += _check_books(conn)
    problems += _check_accounts(conn)
    problems += _check_orders(conn)
    problems += _check_serials(conn)
    problems += _check_events(conn)
    return problems


def _journal_balances(conn: Connection) -> dict[tuple[str | None, Book], int]:
    """Every book's balance according to the journal alone."""
    balances: Counter[tuple[str | None, Book]] = Counter()
    outflow = select(entries.c.from_account_id, entries.c.from_book, func.sum(entries.c.amount)).group_by(
        entries.c.from_account_id, entries.c.from_book
    )
    inflow = select(entries.c.to_account_id, entries.c.to_book, func.sum(entries.c.amount)).group_by(
        entries.c.to_account_id, entries.c.to_book
    )
    for account_id, book, amount in conn.execute(outflow):
        balances[(account_id, Book(book))] -= int(amount)
    for account_id, book, amount in conn.execute(inflow):
        balances[(account_id, Book(book))] += int(amount)
    return dict(balances)


def _check_books(conn: Connection) -> list[str]:
    problems: list[str] = []
    journal = _journal_balances(conn)
    totals: Counter[Unit] = Counter()
    for (_, book), amount in journal.items():
        totals[book.unit] += amount
    for unit, total in totals.items():
        if total:
            problems.append(f"the journal's {unit} books sum to {total}, not 0: an entry has only one side")
    stored = {Book(row.book): row.balance for row in conn.execute(select(system_books))}
    for book, balance in stored.items():
        if journal.get((None, book), 0) != balance:
            problems.append(
                f"system book {book} is {balance}, the journal says {journal.get((None, book), 0)}"
            )
    columns = {
        Book.AVAILABLE: lambda row: row.available,
        Book.HELD: lambda row: row.held,
        Book.CONSUMED: lambda row: row.consumed,
        Book.REFUNDED: lambda row: row.refunded,
        Book.RECEIVABLE: lambda row: -row.owed_idr,
    }
    known: set[str] = set()
    for row in conn.execute(select(accounts)):
        known.add(row.account_id)
        for book, value in columns.items():
            balance = value(row)
            if balance != journal.get((row.account_id, book), 0):
                problems.append(
                    f"account {row.account_id}: {book} is {abs(balance)}, "
                    f"the journal says {abs(journal.get((row.account_id, book), 0))}"
                )
    strangers = sorted({account for account, _ in journal if account is not None} - known)
    problems += [
        f"the journal moves units of account {account}, which does not exist" for account in strangers
    ]
    return problems


def _count_by(conn: Connection, column: Any, *where: Any) -> Counter[Any]:
    query = select(column, func.count()).where(*where).group_by(column)
    return Counter({key: int(count) for key, count in conn.execute(query)})


def _sum_by(conn: Connection, column: Any, amount: Any, *where: Any) -> Counter[Any]:
    query = select(column, func.sum(amount)).where(*where).group_by(column)
    return Counter({key: int(total) for key, total in conn.execute(query)})


def _check_accounts(conn: Connection) -> list[str]:
    problems: list[str] = []
    bought = _sum_by(conn, orders.c.account_id, orders.c.quantity, orders.c.status.in_(PAID_STATUSES))
    sent = _sum_by(conn, transfers.c.from_account_id, transfers.c.quantity)
    received = _sum_by(conn, transfers.c.to_account_id, transfers.c.quantity)
    refunded = _sum_by(conn, refunds.c.account_id, refunds.c.quantity)
    reserved = _count_by(conn, holds.c.funding_account_id, holds.c.status == HoldStatus.RESERVED)
    committed = _count_by(conn, holds.c.funding_account_id, holds.c.status == HoldStatus.COMMITTED)
    settled = _sum_by(conn, settlements.c.account_id, settlements.c.amount_idr)
    # Independent of the journal: a committed hold on credit is billed its price, once.
    billed = _sum_by(
        conn,
        holds.c.funding_account_id,
        holds.c.credit_price_idr,
        holds.c.status == HoldStatus.COMMITTED,
        holds.c.credit_price_idr > 0,
    )
    credit_held = _sum_by(
        conn,
        holds.c.funding_account_id,
        holds.c.credit_price_idr,
        holds.c.status == HoldStatus.RESERVED,
        holds.c.credit_price_idr > 0,
    )
    on_credit = _count_by(
        conn,
        holds.c.funding_account_id,
        holds.c.status.in_((HoldStatus.RESERVED, HoldStatus.COMMITTED)),
        holds.c.credit_price_idr > 0,
    )
    purchased_total = 0
    for row in conn.execute(select(accounts)):
        account = row.account_id
        where = f"account {account}"
        purchased = bought[account] + received[account] - sent[account]
        # A collector's stamps on credit, in progress or made, were drawn from stock.
        purchased += on_credit[account]
        books = row.available + row.held + row.consumed + row.refunded
        purchased_total += books
        if purchased != books:
            problems.append(
                f"{where}: purchased {purchased} (paid orders, transfers, stamps on credit) != "
                f"available {row.available} + held {row.held} + consumed {row.consumed} "
                f"+ refunded {row.refunded}"
            )
        if row.held != reserved[account]:
            problems.append(f"{where}: held is {row.held} but {reserved[account]} holds are reserved on it")
        if row.consumed != committed[account]:
            problems.append(
                f"{where}: consumed is {row.consumed} but {committed[account]} holds committed on it"
            )
        if row.refunded != refunded[account]:
            problems.append(f"{where}: refunded is {row.refunded} but its refunds total {refunded[account]}")
        if row.credit_held_idr != credit_held[account]:
            problems.append(
                f"{where}: {row.credit_held_idr} IDR of credit in use, but its stamps in progress "
                f"on credit cost {credit_held[account]}"
            )
        if row.owed_idr != billed[account] - settled[account]:
            problems.append(
                f"{where}: owes {row.owed_idr} IDR but was billed {billed[account]} "
                f"and settled {settled[account]}"
            )
    stock = conn.execute(select(system_books.c.balance).where(system_books.c.book == Book.STOCK)).scalar()
    if stock is not None and -stock != purchased_total:
        problems.append(f"stock issued {-stock} units but the accounts hold {purchased_total} in all")
    return problems


def _check_orders(conn: Connection) -> list[str]:
    problems: list[str] = []
    applied = _count_by(conn, payments.c.order_id, payments.c.applied.is_(True))
    refunded = _sum_by(conn, refunds.c.order_id, refunds.c.quantity)
    paid_amount = {
        order_id: amount
        for order_id, amount in conn.execute(
            select(payments.c.order_id, payments.c.amount_idr).where(payments.c.applied)
        )
    }
    for order in conn.execute(select(orders)):
        paid = order.status in PAID_STATUSES
        if applied[order.order_id] != (1 if paid else 0):
            problems.append(
                f"order {order.order_id} is {order.status} but has {applied[order.order_id]} applied payments"
            )
        elif paid and paid_amount[order.order_id] != order.amount_idr:
            problems.append(
                f"order {order.order_id} costs {order.amount_idr} but was paid {paid_amount[order.order_id]}"
            )
        if order.refunded_quantity != refunded[order.order_id]:
            problems.append(
                f"order {order.order_id} says {order.refunded_quantity} units refunded, "
                f"its refunds total {refunded[order.order_id]}"
            )
    received = conn.execute(select(func.coalesce(func.sum(payments.c.amount_idr), 0))).scalar_one()
    returned = conn.execute(select(func.coalesce(func.sum(refunds.c.amount_idr), 0))).scalar_one()
    settled = conn.execute(select(func.coalesce(func.sum(settlements.c.amount_idr), 0))).scalar_one()
    book = conn.execute(select(system_books.c.balance).where(system_books.c.book == Book.PAYMENTS)).scalar()
    if book is not None and book != -(received + settled) + returned:
        problems.append(
            f"the payments book is {book} IDR but payments {received} and settlements {settled} "
            f"less refunds {returned} say {-(received + settled) + returned}"
        )
    return problems


def _check_serials(conn: Connection) -> list[str]:
    problems: list[str] = []
    query = select(
        serials.c.serial,
        serials.c.status,
        serials.c.account_id,
        serials.c.document_sha256,
        serials.c.stamped_sha256,
        holds.c.hold_id,
        holds.c.status.label("hold_status"),
        holds.c.account_id.label("hold_account_id"),
        holds.c.document_sha256.label("hold_document_sha256"),
        holds.c.stamped_sha256.label("hold_stamped_sha256"),
    ).select_from(serials.outerjoin(holds, holds.c.serial == serials.c.serial))
    seen: Counter[str] = Counter()
    for row in conn.execution_options(yield_per=_CHUNK).execute(query):
        seen[row.serial] += 1
        if row.hold_id is None:
            problems.append(f"serial {row.serial} ({row.status}) has no hold")
            continue
        expected = SERIAL_STATUS_OF_HOLD[HoldStatus(row.hold_status)]
        if row.status != expected:
            problems.append(
                f"serial {row.serial} is {row.status} but its hold {row.hold_id} is {row.hold_status}"
            )
        if (row.account_id, row.document_sha256, row.stamped_sha256) != (
            row.hold_account_id,
            row.hold_document_sha256,
            row.hold_stamped_sha256,
        ):
            problems.append(
                f"serial {row.serial} is bound to other hashes or owner than its hold {row.hold_id}"
            )
    problems += [f"serial {serial} has {count} holds" for serial, count in seen.items() if count > 1]
    orphans = conn.execute(
        select(holds.c.hold_id, holds.c.serial)
        .select_from(holds.outerjoin(serials, holds.c.serial == serials.c.serial))
        .where(serials.c.serial.is_(None))
    ).all()
    problems += [
        f"hold {hold_id} has serial {serial}, which is not registered" for hold_id, serial in orphans
    ]
    return problems


# Audit event kinds and the records each must match one for one.
_EVENT_RECORDS = {
    "order.created": select(func.count()).select_from(orders),
    "payment.received": select(func.count()).select_from(payments),
    "refund.created": select(func.count()).select_from(refunds),
    "transfer": select(func.count()).select_from(transfers),
    "settlement": select(func.count()).select_from(settlements),
    "hold.reserved": select(func.count()).select_from(holds),
    "hold.committed": select(func.count()).select_from(holds).where(holds.c.status == HoldStatus.COMMITTED),
    "hold.released": select(func.count()).select_from(holds).where(holds.c.status == HoldStatus.RELEASED),
}


def _check_events(conn: Connection) -> list[str]:
    """Every record has its audit event: a ledger change that skipped the log would show here."""
    logged = _count_by(conn, audit_log.c.kind)
    problems = []
    for kind, query in _EVENT_RECORDS.items():
        records = conn.execute(query).scalar_one()
        if logged[kind] != records:
            problems.append(f"the audit log has {logged[kind]} {kind} events for {records} records")
    return problems
