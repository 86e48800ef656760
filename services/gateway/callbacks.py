"""Calling distributors back: which callback URLs are accepted, the webhook secret that signs the
calls, and one signed POST.

A callback URL is https (http too in development), names a host and carries no credentials. In
production it may not name a loopback, private or link-local address either, so a job cannot
make the gateway call into its own network. Redirects are never followed: a 3xx answer is a
failed attempt, like any other answer outside 2xx.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from emeterai.v1 import auth_service_pb2
from services.common.errors import InvalidInput
from services.common.webhooks import sign_webhook
from services.gateway.upstream import upstream

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
SIGNATURE_HEADER = "Webhook-Signature"
# The same for every attempt of one delivery, so a receiver can drop repeats.
DELIVERY_ID_HEADER = "Webhook-Id"
ATTEMPT_TIMEOUT_S = 10.0
USER_AGENT = "emeterai-callbacks/1"


def check_callback_url(url: str, *, dev: bool) -> str:
    """The URL if jobs may call it back; InvalidInput saying what to change otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"the callback URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise InvalidInput("the callback URL is not a valid URL") from None
    allowed = ("https", "http") if dev else ("https",)
    if parts.scheme not in allowed:
        raise InvalidInput("the callback URL must be https" + (" (or http in development)" if dev else ""))
    if not host:
        raise InvalidInput("the callback URL must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("the callback URL must not carry credentials; callbacks are signed instead")
    if not dev and _internal_host(host):
        raise InvalidInput("the callback URL must be a public address")
    return url


def _internal_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


@dataclass(frozen=True)
class Attempt:
    """How one delivery attempt went."""

    delivered: bool
    # The answer's status; 0 when there was none.
    http_status: int = 0
    error: str = ""


class WebhookSecrets(Protocol):
    async def secret_for(self, account_id: str) -> bytes:
        """The key that signs callbacks to the distributor account; NotFound when it has none."""
        ...


class AuthWebhookSecrets:
    """Webhook secrets as the auth service keeps them, read at every delivery so a rotated
    secret signs the very next callback."""

    def __init__(self, auth: Any) -> None:
        self._auth = auth

    async def secret_for(self, account_id: str) -> bytes:
        found = await upstream(
            self._auth.GetWebhookSecret(
                auth_service_pb2.GetWebhookSecretRequest(account_id=account_id), timeout=5
            )
        )
        return str(found.webhook_secret).encode()

    async def rotate(self, account_id: str) -> str:
        rotated = await upstream(
            self._auth.RotateWebhookSecret(
                auth_service_pb2.RotateWebhookSecretRequest(account_id=account_id), timeout=10
            )
        )
        return str(rotated.webhook_secret)


class CallbackClient:
    """POSTs signed JSON bodies; never follows a redirect and never reads more of an answer than
    its status."""

    def __init__(self, timeout_s: float = ATTEMPT_TIMEOUT_S) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def post(self, url: str, body: bytes, secret: bytes, delivery_id: str) -> Attempt:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_webhook(secret, body),
            DELIVERY_ID_HEADER: delivery_id,
        }
        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as answer:
                status = answer.status_code
        except httpx.HTTPError as exc:
            return Attempt(False, 0, f"no answer: {type(exc).__name__}")
        if 200 <= status < 300:
            return Attempt(True, status)
        if 300 <= status < 400:
            return Attempt(False, status, "redirects are not followed")
        return Attempt(False, status, f"answered HTTP {status}")

    async def close(self) -> None:
        await self._http.aclose()
