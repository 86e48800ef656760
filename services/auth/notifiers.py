"""How one-time codes reach a phone. Adapters share one small interface so tests and dev mode use
the outbox while production uses a real channel (the WhatsApp adapter comes later).

Adapters must never log a message body: it holds the code.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from services.auth.model import Clock, OutboxMessage, utc_now
from services.auth.store import dev_outbox

# How many messages the outbox returns at most; it is for eyes and tests, not for export.
OUTBOX_LIMIT = 100


class Notifier(Protocol):
    def send(self, phone: str, body: str) -> None:
        """Deliver `body` to `phone` (E.164); raise NotifierUnavailable if the channel refuses."""
        ...


class DevOutboxNotifier:
    """Keeps messages in the auth database instead of sending them; dev mode reads them back."""

    def __init__(self, engine: Engine, clock: Clock = utc_now, channel: str = "whatsapp") -> None:
        self._engine = engine
        self._clock = clock
        # The channel a real deployment would have used, so the outbox reads like production.
        self.channel = channel

    def send(self, phone: str, body: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(dev_outbox).values(phone=phone, body=body, channel=self.channel, sent_at=self._clock())
            )

    def list_outbox(self, phone: str = "") -> list[OutboxMessage]:
        """Messages to `phone` (E.164), or to everyone when empty; newest first."""
        query = select(dev_outbox).order_by(dev_outbox.c.id.desc()).limit(OUTBOX_LIMIT)
        if phone:
            query = query.where(dev_outbox.c.phone == phone)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [OutboxMessage(phone=r.phone, body=r.body, channel=r.channel, sent_at=r.sent_at) for r in rows]
