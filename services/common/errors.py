"""The error hierarchy every domain raises, and the one place it becomes a gRPC status.

Domain modules raise these types and know nothing of gRPC. Each service hands its own table
(domain error type -> gRPC code) to `error_interceptor`; lookup follows the class hierarchy, so a
table may map a base class once for all its subclasses.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """An error a caller can act on. `message` is safe to show to users."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """The request itself is wrong: a bad field, a broken document."""


class NotFound(DomainError):
    """No such thing, or not one the caller may see."""


class Gone(NotFound):
    """It existed and is no longer kept, e.g. a stamped PDF past its retention (HTTP 410)."""


class Conflict(DomainError):
    """The request clashes with an earlier one (e.g. same idempotency key, other payload)."""


class PreconditionFailed(DomainError):
    """The system is not in a state that allows this (e.g. not enough quota)."""


class Unauthenticated(DomainError):
    """No valid credentials."""


class IdempotencyKeyReused(Conflict):
    """The idempotency key was used before for a different request (HTTP 422, as the IETF
    Idempotency-Key draft asks)."""


class RequestInFlight(Conflict):
    """The first request with this idempotency key is still being processed (HTTP 409 and gRPC
    ABORTED, with a wait worth retrying after)."""

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermissionDenied(DomainError):
    """Valid credentials, but not allowed to do this."""


class Exhausted(DomainError):
    """A limit was hit; try again later: after retry_after_s seconds, when known (0 if not).

    Over gRPC the wait travels as the `retry-after` trailer, and the gateway answers it as the
    HTTP Retry-After header.
    """

    def __init__(self, message: str, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    """A service this one depends on cannot be reached now; safe to retry."""


class NotImplementedYet(DomainError):
    """The contract has the call but this deployment does not offer it."""


RETRY_AFTER_TRAILER = "retry-after"


def retry_after_of(error: DomainError) -> int:
    """The seconds `error` says to wait before sending the request again: a limit's wait, or a
    request still in flight; 0 when it says nothing of when."""
    if isinstance(error, Exhausted | RequestInFlight):
        return error.retry_after_s
    return 0


# The default table. Services add their own types or override entries.
BASE_STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Gone: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ALREADY_EXISTS,
    RequestInFlight: grpc.StatusCode.ABORTED,
    PreconditionFailed: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Exhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    NotImplementedYet: grpc.StatusCode.UNIMPLEMENTED,
}


def status_code_for(error: DomainError, table: dict[type[DomainError], grpc.StatusCode]) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return grpc.StatusCode.INTERNAL
