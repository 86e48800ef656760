"""Payment providers: how an order gets a place to pay, and how a paid notice is trusted.

The ledger only sees the PaymentProvider interface, so a real provider (QRIS aggregator, e-wallet)
plugs in beside SandboxProvider and the tests exercise the same code paths as production.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from services.common.errors import InvalidInput
from services.common.webhooks import sign_webhook, verify_webhook
from services.quota.models import Order


class PaymentStatus(StrEnum):
    SUCCEEDED = "payment.succeeded"
    FAILED = "payment.failed"


@dataclass(frozen=True)
class PaymentEvent:
    """A verified notice from a provider. event_id is unique per provider and delivery-stable."""

    event_id: str
    order_id: str
    amount_idr: int
    status: PaymentStatus
    # The provider's own payment reference, as given by create_payment.
    reference: str


class PaymentProvider(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def remote(self) -> bool:
        """Whether create_payment is a network call, worth running side by side with others."""
        ...

    def create_payment(self, order: Order) -> tuple[str, str]:
        """Open a payment for order; return (provider reference, URL where the payer pays)."""
        ...

    def parse_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        """Verify and decode a webhook; raise Unauthenticated or InvalidInput."""
        ...

    def refund_payment(self, payment_reference: str, refund_id: str, amount_idr: int) -> str:
        """Send amount_idr of a payment back to the payer; return the provider's refund reference.

        Idempotent by refund_id: the ledger may ask again after a crash or a timeout, and the
        payer must get the money once. Raise Unavailable when the provider cannot be reached.
        """
        ...


class SandboxProvider:
    """A provider that takes no money: for development and tests.

    Its "payer" is whoever calls pay(): it produces the webhook a real provider would send,
    signed with the shared secret, so the verification path is the real one.
    """

    name = "sandbox"
    # Opening a sandbox payment is a random reference and a URL, made in this process.
    remote = False

    def __init__(
        self,
        webhook_secret: bytes,
        # The gateway's development route that plays the payer; {order_id} and {reference} are filled in.
        checkout_url: str = "http://127.0.0.1:8080/v1/dev/payments/{order_id}/pay",
        clock: Callable[[], datetime] | None = None,
        tolerance_s: int = 300,
    ) -> None:
        if not webhook_secret:
            raise ValueError("the sandbox provider needs a webhook secret")
        self._secret = webhook_secret
        self._checkout_url = checkout_url
        self._clock = clock
        self._tolerance_s = tolerance_s
        # refund_id -> (payment reference, amount): what the sandbox "paid back", once per refund.
        self.refunds: dict[str, tuple[str, int]] = {}

    def _now(self) -> int | None:
        return None if self._clock is None else int(self._clock().timestamp())

    def create_payment(self, order: Order) -> tuple[str, str]:
        reference = f"sbx_{secrets.token_hex(10)}"
        return reference, self._checkout_url.format(order_id=order.order_id, reference=reference)

    def pay(
        self,
        order: Order,
        *,
        event_id: str | None = None,
        status: PaymentStatus = PaymentStatus.SUCCEEDED,
        amount_idr: int | None = None,
    ) -> tuple[bytes, str]:
        """The (payload, signature header) of the webhook that reports order as paid."""
        body = {
            "event_id": event_id or f"evt_{secrets.token_hex(10)}",
            "type": str(status),
            "order_id": order.order_id,
            "amount_idr": order.amount_idr if amount_idr is None else amount_idr,
            "reference": order.payment_reference,
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        return payload, sign_webhook(self._secret, payload, self._now())

    def refund_payment(self, payment_reference: str, refund_id: str, amount_idr: int) -> str:
        self.refunds.setdefault(refund_id, (payment_reference, amount_idr))
        return f"sbx_rf_{refund_id}"

    def parse_webhook(self, payload: bytes, signature_header: str) -> PaymentEvent:
        verify_webhook(self._secret, payload, signature_header, self._tolerance_s, now=self._now())
        try:
            body = json.loads(payload)
            event = PaymentEvent(
                event_id=_text(body, "event_id"),
                order_id=_text(body, "order_id"),
                amount_idr=_amount(body),
                status=PaymentStatus(body["type"]),
                reference=_text(body, "reference"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # A correctly signed but malformed body is the provider's bug; say what was wrong.
            raise InvalidInput(f"payment webhook body is malformed: {exc}") from None
        return event


def _text(body: dict[str, object], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{key} must be a non-empty string of at most 200 characters")
    return value


def _amount(body: dict[str, object]) -> int:
    value = body["amount_idr"]
    # bool is an int in Python; a provider sending true is not sending an amount.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError("amount_idr must be a positive integer")
    return value
