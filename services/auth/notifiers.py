"""How one-time codes reach a phone. Adapters share one small interface: dev mode and tests use
the outbox; production sends a WhatsApp authentication template through the WhatsApp Business
Cloud API and, when WhatsApp refuses or cannot be reached, an SMS through an HTTP SMS gateway.

Adapters must never log a message or a provider's answer to one: either may hold the code.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import httpx
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from services.auth.model import Clock, OutboxMessage, utc_now
from services.auth.store import dev_outbox

log = logging.getLogger(__name__)

# How many messages the outbox returns at most; it is for eyes and tests, not for export.
OUTBOX_LIMIT = 100


def message_body(code: str, ttl_s: int) -> str:
    """The text of a code message, for channels that send text."""
    minutes = math.ceil(ttl_s / 60)
    return f"Kode e-meterai Anda: {code}. Berlaku {minutes} menit. Jangan berikan kode ini kepada siapa pun."


class DeliveryFailed(Exception):
    """A channel did not take the message. Its text names the channel and status, never the message."""


class Notifier(Protocol):
    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        """Deliver a sign-in code to `phone` (E.164), valid ttl_s seconds; raise if the channel
        refuses or cannot be reached."""
        ...


class DevOutboxNotifier:
    """Keeps messages in the auth database instead of sending them; dev mode reads them back."""

    def __init__(self, engine: Engine, clock: Clock = utc_now, channel: str = "whatsapp") -> None:
        self._engine = engine
        self._clock = clock
        # The channel a real deployment would have used, so the outbox reads like production.
        self.channel = channel

    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        body = message_body(code, ttl_s)
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


class WhatsAppNotifier:
    """The WhatsApp Business Cloud API's messages endpoint, sending an authentication template.

    WhatsApp lets a business start a conversation only with an approved template; an
    authentication template takes the code as its body parameter and as its copy-code button's.
    """

    def __init__(
        self, url: str, token: str, template: str, language: str, *, timeout_s: float = 10.0
    ) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._template = template
        self._language = language
        self._client = httpx.Client(timeout=timeout_s)

    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": phone.removeprefix("+"),
            "type": "template",
            "template": {
                "name": self._template,
                "language": {"code": self._language},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": code}]},
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": code}],
                    },
                ],
            },
        }
        _post(self._client, "whatsapp", self._url, payload, self._headers)


class SmsNotifier:
    """An HTTP SMS gateway: POST {"to": E.164, "message": text} with a bearer token, 2xx when taken."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._client = httpx.Client(timeout=timeout_s)

    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        _post(
            self._client, "sms", self._url, {"to": phone, "message": message_body(code, ttl_s)}, self._headers
        )


class FallbackNotifier:
    """Channels tried in order until one takes the message: WhatsApp first, then SMS."""

    def __init__(self, channels: list[Notifier]) -> None:
        if not channels:
            raise ValueError("a fallback needs at least one channel")
        self._channels = channels

    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        failure: Exception | None = None
        for channel in self._channels:
            try:
                channel.send_code(phone, code, ttl_s)
                return
            except Exception as exc:
                failure = exc
                log.warning(
                    "code channel failed; trying the next",
                    extra={"channel": type(channel).__name__, "error_type": type(exc).__name__},
                )
        assert failure is not None
        raise failure


def _post(
    client: httpx.Client, channel: str, url: str, payload: dict[str, Any], headers: dict[str, str]
) -> None:
    try:
        response = client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{channel} could not be reached ({type(exc).__name__})") from None
    if not response.is_success:
        # Not the body: a provider may quote the message back.
        raise DeliveryFailed(f"{channel} answered HTTP {response.status_code}")
