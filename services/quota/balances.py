"""The only place account balances change: every movement updates the accounts involved with a
conditional UPDATE and journals one double-entry, on the caller's transaction, so both commit or
neither does.

An account's books are columns of its row: available, held, consumed and refunded count stamps;
owed_idr is minus the balance of its receivable book (what a collector owes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, select, update

from services.quota.db import insert_rows
from services.quota.errors import InsufficientQuota, LedgerInconsistency
from services.quota.journal import Journal, Side
from services.quota.models import Account, Balance, Book, Channel, EntryKind
from services.quota.schema import accounts

# Each account book as (column, sign): the book's balance is sign * column.
_COLUMNS: dict[Book, tuple[Column[int], int]] = {
    Book.AVAILABLE: (accounts.c.available, 1),
    Book.HELD: (accounts.c.held, 1),
    Book.CONSUMED: (accounts.c.consumed, 1),
    Book.REFUNDED: (accounts.c.refunded, 1),
    Book.RECEIVABLE: (accounts.c.owed_idr, -1),
}


def new_account(account_id: str, kind: Channel, now: datetime) -> dict[str, Any]:
    """The row of an account that has nothing yet."""
    return {
        "account_id": account_id,
        "kind": kind,
        "pool_account_id": None,
        "credit_limit_idr": 0,
        "available": 0,
        "held": 0,
        "consumed": 0,
        "refunded": 0,
        "owed_idr": 0,
        "credit_held_idr": 0,
        "created_at": now,
    }


def ensure_accounts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Create the accounts of rows (new_account) that do not exist yet; give them in account order,
    so that concurrent transactions take the row locks in the same order."""
    insert_rows(conn, accounts, rows, skip_existing=True)


def ensure_account(conn: Connection, account_id: str, now: datetime, kind: Channel = Channel.RETAIL) -> None:
    """Create the account with zero balances unless it exists (accounts are made on first use)."""
    ensure_accounts(conn, [new_account(account_id, kind, now)])


def move(
    journal: Journal,
    source: Side,
    target: Side,
    amount: int,
    *,
    kind: EntryKind,
    channel: Channel,
    reference: str,
    now: datetime,
) -> None:
    """Move amount from one book to another and journal it. Account rows must exist.

    A decrement is conditional (WHERE column >= amount), so two concurrent movements can never take
    the same unit: the loser matches no row and nothing was written. Within one account both books
    change in one statement; across accounts the rows are updated in account order, so transfers in
    opposite directions cannot deadlock.
    """
    if amount <= 0:
        raise ValueError("a movement needs a positive amount")
    changes: dict[str, list[tuple[Column[int], int]]] = {}
    if source.account_id is not None:
        column, sign = _COLUMNS[source.book]
        changes.setdefault(source.account_id, []).append((column, -sign * amount))
    if target.account_id is not None:
        column, sign = _COLUMNS[target.book]
        changes.setdefault(target.account_id, []).append((column, sign * amount))
    for account_id in sorted(changes):
        values: dict[str, ColumnElement[int]] = {}
        conditions = [accounts.c.account_id == account_id]
        for column, delta in changes[account_id]:
            values[column.name] = column + delta
            if delta < 0:
                conditions.append(column >= -delta)
        result = journal.conn.execute(update(accounts).where(*conditions).values(values))
        if result.rowcount != 1:
            _shortfall(account_id, source, amount)
    journal.entry(source, target, amount, kind=kind, channel=channel, reference=reference, now=now)


def _shortfall(account_id: str, source: Side, amount: int) -> None:
    if source.account_id == account_id and source.book is Book.AVAILABLE:
        raise InsufficientQuota(
            f"not enough available quota: {amount} needed; buy more, or wait for stamps in progress"
        )
    # Holds and orders say the units are there; the balance says otherwise.
    raise LedgerInconsistency(f"account {account_id} cannot move {amount} out of {source.book}")


def available_units(conn: Connection, account_id: str, *, lock: bool = False) -> int:
    """Available units now; with lock, the account row stays locked until the transaction ends."""
    query = select(accounts.c.available).where(accounts.c.account_id == account_id)
    if lock:
        # Ignored by SQLite, whose write transactions already hold the database lock.
        query = query.with_for_update()
    return conn.execute(query).scalar_one_or_none() or 0


def get_balance(conn: Connection, account_id: str) -> Balance:
    """The account's balance; an account never used has zero everywhere."""
    row = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).one_or_none()
    if row is None:
        return Balance(account_id=account_id, available=0, held=0, consumed=0, refunded=0)
    return Balance(
        account_id=account_id,
        available=row.available,
        held=row.held,
        consumed=row.consumed,
        refunded=row.refunded,
        owed_idr=row.owed_idr,
    )


def account_from_row(row: Any) -> Account:
    return Account(
        account_id=row.account_id,
        kind=Channel(row.kind),
        pool_account_id=row.pool_account_id,
        credit_limit_idr=row.credit_limit_idr,
        created_at=row.created_at,
    )
