"""Transfers: available units of one account become available units of another, e.g. from a
distributor's pool or an enterprise parent to a sub-account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from services.common.errors import Conflict, PreconditionFailed
from services.quota.balances import ensure_account, move
from services.quota.journal import Journal, Side
from services.quota.models import Book, Channel, EntryKind, Transfer
from services.quota.schema import accounts, new_id, transfers


def _transfer_from_row(row: Any) -> Transfer:
    return Transfer(
        transfer_id=row.transfer_id,
        from_account_id=row.from_account_id,
        to_account_id=row.to_account_id,
        quantity=row.quantity,
        channel=Channel(row.channel),
        created_at=row.created_at,
    )


def transfer(
    journal: Journal,
    *,
    from_account_id: str,
    to_account_id: str,
    quantity: int,
    key: str,
    channel: Channel,
    now: datetime,
) -> Transfer:
    conn = journal.conn
    earlier = conn.execute(
        select(transfers).where(
            transfers.c.from_account_id == from_account_id, transfers.c.idempotency_key == key
        )
    ).one_or_none()
    if earlier is not None:
        if (earlier.to_account_id, earlier.quantity, earlier.channel) != (to_account_id, quantity, channel):
            raise Conflict("this idempotency key was used for a different transfer")
        return _transfer_from_row(earlier)

    # Rows are created in a fixed order, or A->B racing B->A could deadlock on PostgreSQL.
    for account_id in sorted((from_account_id, to_account_id)):
        ensure_account(conn, account_id, now)
    pool = conn.execute(
        select(accounts.c.pool_account_id).where(accounts.c.account_id == to_account_id)
    ).scalar_one()
    if pool is not None:
        raise PreconditionFailed(f"{to_account_id} stamps from the pool of {pool}: transfer to that account")
    transfer_id = new_id("trf")
    move(
        journal,
        Side(from_account_id, Book.AVAILABLE),
        Side(to_account_id, Book.AVAILABLE),
        quantity,
        kind=EntryKind.TRANSFER,
        channel=channel,
        reference=transfer_id,
        now=now,
    )
    conn.execute(
        insert(transfers).values(
            transfer_id=transfer_id,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            idempotency_key=key,
            quantity=quantity,
            channel=channel,
            created_at=now,
        )
    )
    journal.audit(
        "transfer",
        transfer_id,
        from_account_id,
        {"to_account_id": to_account_id, "quantity": quantity, "channel": str(channel)},
        now,
    )
    return _transfer_from_row(
        conn.execute(select(transfers).where(transfers.c.transfer_id == transfer_id)).one()
    )
