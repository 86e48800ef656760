"""One transaction's books: the connection every ledger function works on, plus what is appended
to the journal and the audit log when the transaction ends.

Appending at the end lets many operations share one transaction (see group_commit.py) at the cost
of a few statements in all, and puts the locks every transaction shares (the system books and the
audit chain's head) last, held only for the moment before commit.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from services.quota import audit
from services.quota.db import ValuesStatement, insert_rows
from services.quota.models import Book, Channel, EntryKind
from services.quota.schema import audit_head, audit_log, entries

_CHANGE_SYSTEM_BOOKS = ValuesStatement(
    ("d_book", "d_delta"), "UPDATE system_books SET balance = balance + d_delta FROM d WHERE book = d_book"
)


@dataclass(frozen=True)
class Side:
    """One side of an entry: an account's book, or a system book (account_id None)."""

    account_id: str | None
    book: Book

    def __post_init__(self) -> None:
        if (self.account_id is None) != self.book.is_system:
            raise ValueError(f"{self.book} is {'a system' if self.book.is_system else 'an account'} book")


def system(book: Book) -> Side:
    return Side(None, book)


class Journal:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._entries: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._system_deltas: Counter[Book] = Counter()

    def entry(
        self,
        source: Side,
        target: Side,
        amount: int,
        *,
        kind: EntryKind,
        channel: Channel,
        reference: str,
        now: datetime,
    ) -> None:
        """Journal a movement whose account balances the caller has already changed.

        System books are not locked per movement: their changes add up and are applied once, at
        the end, since nothing bounds them.
        """
        if amount <= 0:
            raise ValueError("an entry needs a positive amount")
        if source.book.unit is not target.book.unit:
            raise ValueError(f"{source.book} and {target.book} count different things")
        self._entries.append(
            {
                "unit": source.book.unit,
                "from_account_id": source.account_id,
                "from_book": source.book,
                "to_account_id": target.account_id,
                "to_book": target.book,
                "amount": amount,
                "kind": kind,
                "channel": channel,
                "reference": reference,
                "created_at": now,
            }
        )
        if source.account_id is None:
            self._system_deltas[source.book] -= amount
        if target.account_id is None:
            self._system_deltas[target.book] += amount

    def audit(
        self, kind: str, subject: str, account_id: str | None, facts: dict[str, Any], now: datetime
    ) -> None:
        """Record a ledger event in the hash-chained audit log (chained when the journal flushes)."""
        self._events.append(
            {
                "kind": kind,
                "subject": subject,
                "account_id": account_id,
                "payload": json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=True),
                "created_at": now,
            }
        )

    def flush(self) -> None:
        """Write what was appended; call once, last thing before commit."""
        insert_rows(self.conn, entries, self._entries)
        # In book order, so two transactions lock the system books in the same order.
        deltas = sorted((book.value, delta) for book, delta in self._system_deltas.items() if delta)
        if deltas:
            _CHANGE_SYSTEM_BOOKS.execute(self.conn, deltas)
        if self._events:
            self._chain()
        self._entries, self._events, self._system_deltas = [], [], Counter()

    def _chain(self) -> None:
        # The head's row lock orders every appender, on every replica; it is held until commit.
        head = self.conn.execute(select(audit_head).where(audit_head.c.id == 1).with_for_update()).one()
        seq, previous = head.seq, bytes(head.hash)
        rows = []
        for event in self._events:
            seq += 1
            digest = audit.event_hash(previous, seq=seq, **event)
            rows.append({"seq": seq, "prev_hash": previous, "hash": digest, **event})
            previous = digest
        insert_rows(self.conn, audit_log, rows)
        self.conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=previous))
