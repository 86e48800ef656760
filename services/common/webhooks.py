"""Signed webhooks: the payment provider calling us, and us calling distributors back.

Header format `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, as Stripe-style providers
use: the timestamp inside the MAC stops replays of old deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from services.common.errors import Unauthenticated


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for body."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify_webhook(
    secret: bytes, body: bytes, header: str, tolerance_s: int = 300, now: int | None = None
) -> None:
    """Raise Unauthenticated unless header is a fresh, valid signature of body."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, value)
    timestamp = fields.get("t", "")
    signature = fields.get("v1", "")
    if not timestamp.isdigit() or not signature:
        raise Unauthenticated("webhook signature header is malformed")
    current = int(time.time()) if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise Unauthenticated("webhook signature is too old or from the future")
    if not hmac.compare_digest(_mac(secret, int(timestamp), body), signature):
        raise Unauthenticated("webhook signature does not match")
