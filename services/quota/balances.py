"""The only place balances change: every movement updates one account and journals one entry,
on the caller's connection, so both commit or neither does."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.quota.errors import InsufficientQuota, LedgerInconsistency
from services.quota.models import Balance, Channel, EntryKind, State
from services.quota.schema import accounts, ledger_entries

_COLUMNS = {
    State.AVAILABLE: accounts.c.available,
    State.HELD: accounts.c.held,
    State.CONSUMED: accounts.c.consumed,
    State.REFUNDED: accounts.c.refunded,
}


def ensure_account(conn: Connection, account_id: str, now: datetime) -> None:
    """Create the account with zero balances unless it exists (accounts are made on first use)."""
    values = {"account_id": account_id, "available": 0, "held": 0, "consumed": 0, "refunded": 0}
    values["created_at"] = now
    dialect = conn.dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(accounts).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(accounts).values(values).on_conflict_do_nothing()
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    conn.execute(statement)


def move(
    conn: Connection,
    *,
    account_id: str,
    from_state: State,
    to_state: State,
    quantity: int,
    kind: EntryKind,
    channel: Channel,
    reference: str,
    now: datetime,
) -> None:
    """Move quantity units of account_id from one state to another and journal it.

    The decrement is conditional (WHERE column >= quantity), so two concurrent movements can never
    take the same unit: the loser matches no row. The account must exist.
    """
    if quantity <= 0:
        raise ValueError("a movement needs a positive quantity")
    conditions = [accounts.c.account_id == account_id]
    values = {}
    if from_state is not State.EXTERNAL:
        source = _COLUMNS[from_state]
        conditions.append(source >= quantity)
        values[source.name] = source - quantity
    if to_state is not State.EXTERNAL:
        target = _COLUMNS[to_state]
        values[target.name] = target + quantity
    result = conn.execute(update(accounts).where(*conditions).values(values))
    if result.rowcount != 1:
        if from_state is State.AVAILABLE:
            raise InsufficientQuota(
                f"not enough available quota: {quantity} needed; buy more, or wait for stamps in progress"
            )
        # Holds and orders say the units are there; the balance says otherwise.
        raise LedgerInconsistency(f"account {account_id} has fewer than {quantity} units {from_state}")
    conn.execute(
        insert(ledger_entries).values(
            account_id=account_id,
            from_state=from_state,
            to_state=to_state,
            quantity=quantity,
            kind=kind,
            channel=channel,
            reference=reference,
            created_at=now,
        )
    )


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
    )
