"""Owners of quota and their channels: retail accounts are made on first use; distributors,
enterprise children that draw on a parent's pool, and post-paid collectors are configured here.
A collector's monthly statement and the settlements that pay it live here too.

Functions run on a Journal inside the caller's transaction; Ledger owns the transactions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from services.common.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from services.quota.balances import account_from_row, ensure_account, move
from services.quota.journal import Journal, Side, system
from services.quota.models import Account, Book, Channel, EntryKind, HoldStatus, Settlement, Statement
from services.quota.schema import accounts, holds, new_id, settlements


def get(conn: Any, account_id: str) -> Account:
    row = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).one_or_none()
    if row is None:
        raise NotFound(f"no account {account_id}")
    return account_from_row(row)


def configure(
    journal: Journal,
    *,
    account_id: str,
    kind: Channel,
    pool_account_id: str | None,
    credit_limit_idr: int,
    now: datetime,
) -> Account:
    """Set an account's kind, pool and credit limit, creating it if needed; the same settings again
    change nothing."""
    conn = journal.conn
    if credit_limit_idr and kind is not Channel.COLLECTOR:
        raise InvalidInput("only a collector account can have a credit limit")
    if pool_account_id is not None:
        if pool_account_id == account_id:
            raise InvalidInput("an account cannot draw on its own pool")
        pool = conn.execute(select(accounts).where(accounts.c.account_id == pool_account_id)).one_or_none()
        if pool is None:
            raise NotFound(f"no pool account {pool_account_id}")
        if pool.pool_account_id is not None:
            raise PreconditionFailed(f"{pool_account_id} draws on a pool itself; pools do not nest")
        if kind is Channel.COLLECTOR:
            raise InvalidInput("a collector stamps on its own credit, not from a pool")
    ensure_account(conn, account_id, now, kind)
    row = conn.execute(select(accounts).where(accounts.c.account_id == account_id).with_for_update()).one()
    current = account_from_row(row)
    if (current.kind, current.pool_account_id, current.credit_limit_idr) == (
        kind,
        pool_account_id,
        credit_limit_idr,
    ):
        return current
    if pool_account_id is not None and (row.available or row.held):
        raise PreconditionFailed("the account still has units of its own: use or transfer them first")
    if kind is not Channel.COLLECTOR and row.owed_idr:
        raise PreconditionFailed("the collector still owes money: settle its statement first")
    drawn_on = conn.execute(
        select(func.count()).select_from(accounts).where(accounts.c.pool_account_id == account_id)
    ).scalar_one()
    if pool_account_id is not None and drawn_on:
        raise PreconditionFailed("other accounts draw on this account's pool; pools do not nest")
    conn.execute(
        update(accounts)
        .where(accounts.c.account_id == account_id)
        .values(kind=kind, pool_account_id=pool_account_id, credit_limit_idr=credit_limit_idr)
    )
    journal.audit(
        "account.configured",
        account_id,
        account_id,
        {"kind": str(kind), "pool_account_id": pool_account_id, "credit_limit_idr": credit_limit_idr},
        now,
    )
    return get(conn, account_id)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of a "YYYY-MM" month in UTC and of the month after it."""
    try:
        year, month = (int(part) for part in period.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise InvalidInput("period must be a month as YYYY-MM") from None
    if len(period) != 7:
        raise InvalidInput("period must be a month as YYYY-MM")
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def statement(conn: Any, account_id: str, period: str) -> Statement:
    """What a collector stamped on credit in the month, what that costs, and what it owes now."""
    start, end = period_bounds(period)
    account = conn.execute(select(accounts).where(accounts.c.account_id == account_id)).one_or_none()
    if account is None or account.kind != Channel.COLLECTOR:
        raise NotFound(f"no collector account {account_id}")
    stamps, amount = conn.execute(
        select(func.count(), func.coalesce(func.sum(holds.c.credit_price_idr), 0)).where(
            holds.c.funding_account_id == account_id,
            holds.c.status == HoldStatus.COMMITTED,
            holds.c.credit_price_idr > 0,
            holds.c.resolved_at >= start,
            holds.c.resolved_at < end,
        )
    ).one()
    return Statement(
        account_id=account_id,
        period=period,
        stamps=int(stamps),
        amount_idr=int(amount),
        outstanding_idr=account.owed_idr,
    )


def settle(
    journal: Journal, *, account_id: str, amount_idr: int, reference: str, key: str, now: datetime
) -> Settlement:
    """Record money a collector paid against what it owes; a repeated key returns the first."""
    conn = journal.conn
    earlier = conn.execute(
        select(settlements).where(
            settlements.c.account_id == account_id, settlements.c.idempotency_key == key
        )
    ).one_or_none()
    if earlier is not None:
        if (earlier.amount_idr, earlier.reference) != (amount_idr, reference):
            raise Conflict("this idempotency key was used for a different settlement")
        return _settlement_from_row(earlier)
    account = conn.execute(
        select(accounts).where(accounts.c.account_id == account_id).with_for_update()
    ).one_or_none()
    if account is None or account.kind != Channel.COLLECTOR:
        raise NotFound(f"no collector account {account_id}")
    if amount_idr > account.owed_idr:
        raise PreconditionFailed(f"the collector owes {account.owed_idr} IDR; {amount_idr} is more than that")
    settlement_id = new_id("stl")
    move(
        journal,
        system(Book.PAYMENTS),
        Side(account_id, Book.RECEIVABLE),
        amount_idr,
        kind=EntryKind.SETTLEMENT,
        channel=Channel.COLLECTOR,
        reference=settlement_id,
        now=now,
    )
    values = {
        "settlement_id": settlement_id,
        "account_id": account_id,
        "idempotency_key": key,
        "amount_idr": amount_idr,
        "reference": reference,
        "created_at": now,
    }
    conn.execute(insert(settlements).values(values))
    journal.audit(
        "settlement", settlement_id, account_id, {"amount_idr": amount_idr, "reference": reference}, now
    )
    return Settlement(**{k: v for k, v in values.items() if k != "idempotency_key"})


def _settlement_from_row(row: Any) -> Settlement:
    return Settlement(
        settlement_id=row.settlement_id,
        account_id=row.account_id,
        amount_idr=row.amount_idr,
        reference=row.reference,
        created_at=row.created_at,
    )
