"""Calls to the internal services, with their statuses turned back into domain errors.

The internal services only put user-safe text in their status details (see ErrorInterceptor),
so those details may travel on; an unexpected status becomes a bare internal error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc

from emeterai.v1 import auth_service_pb2_grpc, quota_service_pb2_grpc, signer_service_pb2_grpc
from services.common import errors

if TYPE_CHECKING:
    from services.auth.client import BatchingAuthStub
    from services.gateway.signer_pool import SignerPool

log = logging.getLogger(__name__)

T = TypeVar("T")


class UpstreamFailure(Exception):
    """An internal service failed in a way the caller cannot act on."""


_DOMAIN_ERRORS: dict[grpc.StatusCode, type[errors.DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.Conflict,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: errors.PreconditionFailed,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.Exhausted,
    grpc.StatusCode.UNIMPLEMENTED: errors.NotImplementedYet,
}

_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


async def upstream(call: Awaitable[T]) -> T:
    """Await an internal call; its failure comes back as a DomainError or UpstreamFailure."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise errors.Exhausted(exc.details() or "too many requests", _retry_after(exc)) from None
        if code in _DOMAIN_ERRORS:
            raise _DOMAIN_ERRORS[code](exc.details() or code.name.lower()) from None
        if code in _TRANSIENT:
            log.warning("internal service unavailable", extra={"code": code.name})
            raise errors.Unavailable("the service is busy or restarting; try again shortly") from None
        log.error("internal service failed", extra={"code": code.name})
        raise UpstreamFailure(code.name) from None


async def idempotent(call: Awaitable[T]) -> T:
    """upstream() for a call made with an idempotency key: the key's reuse for another request
    (ALREADY_EXISTS from the ledger) is IdempotencyKeyReused."""
    try:
        return await upstream(call)
    except errors.Conflict as exc:
        raise errors.IdempotencyKeyReused(exc.message) from None


def _retry_after(exc: grpc.aio.AioRpcError) -> int:
    for key, value in exc.trailing_metadata() or ():
        if key == errors.RETRY_AFTER_TRAILER and str(value).isdigit():
            return int(value)
    return 0


@dataclass(frozen=True)
class Backends:
    """Stubs for the internal services, each calling with the gateway's service identity."""

    # An AuthServiceStub, or the BatchingAuthStub that wraps one.
    auth: auth_service_pb2_grpc.AuthServiceStub | BatchingAuthStub
    # A QuotaServiceStub, or the BatchingQuotaStub that wraps one.
    quota: quota_service_pb2_grpc.QuotaServiceStub
    # A SignerServiceStub, or the SignerPool over several replicas.
    signer: signer_service_pb2_grpc.SignerServiceStub | SignerPool
