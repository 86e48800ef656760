"""Transfers: available units of one account become available units of another, e.g. from a
distributor's pool or an enterprise parent to a sub-account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from services.common.errors import Conflict
from services.quota.balances import ensure_account, move
from services.quota.models import Channel, EntryKind, State, Transfer
from services.quota.schema import new_id, transfers


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
    conn: Connection,
    *,
    from_account_id: str,
    to_account_id: str,
    quantity: int,
    key: str,
    channel: Channel,
    now: datetime,
) -> Transfer:
    earlier = conn.execute(
        select(transfers).where(
            transfers.c.from_account_id == from_account_id, transfers.c.idempotency_key == key
        )
    ).one_or_none()
    if earlier is not None:
        if (earlier.to_account_id, earlier.quantity, earlier.channel) != (to_account_id, quantity, channel):
            raise Conflict("this idempotency key was used for a different transfer")
        return _transfer_from_row(earlier)

    # Rows are created and locked in a fixed order, or A->B racing B->A could deadlock on PostgreSQL.
    for account_id in sorted((from_account_id, to_account_id)):
        ensure_account(conn, account_id, now)
    transfer_id = new_id("trf")
    debit = {"account_id": from_account_id, "from_state": State.AVAILABLE, "to_state": State.EXTERNAL}
    credit = {"account_id": to_account_id, "from_state": State.EXTERNAL, "to_state": State.AVAILABLE}
    # Crediting first is harmless: a failed debit rolls the whole transaction back.
    for side in sorted((debit, credit), key=lambda movement: str(movement["account_id"])):
        move(
            conn,
            **side,
            quantity=quantity,
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
    return _transfer_from_row(
        conn.execute(select(transfers).where(transfers.c.transfer_id == transfer_id)).one()
    )
