"""Errors of the auth domain. Messages are shown to users, so they say what to do next.

Every type here derives from one of services.common.errors, so the shared status table maps it;
`NotifierUnavailable` is the one that needs its own entry (see servicer.AUTH_STATUS_CODES).
"""

from __future__ import annotations

from services.common.errors import (
    DomainError,
    Exhausted,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unauthenticated,
)


class InvalidPhone(InvalidInput):
    pass


class ResendTooSoon(Exhausted):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"a code was sent recently; wait {retry_after_s} seconds before asking again", retry_after_s
        )


class TooManyRequests(Exhausted):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many requests; try again in {retry_after_s} seconds", retry_after_s)


class TooManyAttempts(Exhausted):
    def __init__(self) -> None:
        super().__init__("too many wrong codes; request a new code")


class WrongCode(Unauthenticated):
    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"the code is wrong; {attempts_left} attempts left")
        self.attempts_left = attempts_left


class NoPendingCode(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("no code is waiting for this number; request a new code")


class CodeExpired(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("the code has expired; request a new code")


class InvalidRefreshToken(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("the refresh token is not valid; sign in again")


class RefreshTokenReused(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("the refresh token was already used; its sessions are signed out, sign in again")


class InvalidClientCredentials(Unauthenticated):
    # One message for unknown, revoked and wrong-secret clients, so callers cannot probe which.
    def __init__(self) -> None:
        super().__init__("client id or secret is not valid")


class InvalidServiceCredentials(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("service secret is not valid")


class AccountNotFound(NotFound):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}")


class DistributorNotFound(NotFound):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"no distributor client {client_id!r}")


class DistributorRevoked(PreconditionFailed):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"distributor client {client_id!r} is revoked; create a new one")


class NoWebhookSecret(NotFound):
    def __init__(self) -> None:
        super().__init__(
            "this distributor has no live credential with a webhook secret; "
            "call RotateWebhookSecret to make one"
        )


class WrongPin(PermissionDenied):
    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"the current PIN is wrong; {attempts_left} attempts left")
        self.attempts_left = attempts_left


class PinLocked(PreconditionFailed):
    def __init__(self) -> None:
        super().__init__("the stamping PIN is locked after too many wrong tries; contact support to reset it")


class NotifierUnavailable(DomainError):
    """The message could not be handed to the delivery channel; the caller may retry at once."""

    def __init__(self) -> None:
        super().__init__("the code could not be sent right now; try again shortly")


class DevOutboxDisabled(PreconditionFailed):
    def __init__(self) -> None:
        super().__init__("the development outbox exists only in dev mode with the dev notifier")
