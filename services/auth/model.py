"""Value types the auth domain hands out, and the clock every module reads time from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

# Injected everywhere time matters so tests can move it instead of sleeping.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AccountKind(StrEnum):
    RETAIL = "retail"
    DISTRIBUTOR = "distributor"
    DISTRIBUTOR_CUSTOMER = "distributor_customer"
    ENTERPRISE = "enterprise"
    ENTERPRISE_CHILD = "enterprise_child"
    COLLECTOR = "collector"
    OPERATOR = "operator"


class TokenKind(StrEnum):
    """The "kind" claim of an access token; verifiers decide what each kind may call."""

    RETAIL = "retail"
    DISTRIBUTOR = "distributor"
    OPERATOR = "operator"
    SERVICE = "service"


@dataclass(frozen=True)
class Account:
    account_id: str
    kind: AccountKind
    # E.164 for accounts that sign in by phone; None otherwise.
    phone: str | None
    display_name: str
    parent_account_id: str | None
    # The parent's own id for a sub-account (unique per parent); None otherwise.
    external_ref: str | None
    created_at: datetime
    stamping_pin_set: bool


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    expires_at: datetime
    expires_in_s: int
    token_type: str = "Bearer"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in_s: int
    token_type: str = "Bearer"


@dataclass(frozen=True)
class DistributorCredential:
    client_id: str
    account_id: str
    display_name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class OutboxMessage:
    phone: str
    body: str
    channel: str
    sent_at: datetime


class CodeSent(NamedTuple):
    phone: str
    expires_in_s: int
    resend_after_s: int


class SignIn(NamedTuple):
    tokens: TokenPair
    account: Account
    created: bool


class PinCheck(NamedTuple):
    valid: bool
    attempts_left: int
