"""Server interceptors every service installs: request metrics, domain errors to statuses, and who
may call what.

Both wrap the method handler rather than inspect it, so streaming methods get the same treatment
as unary ones and the handler sees the caller through `current_principal()`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import (
    RETRY_AFTER_TRAILER,
    DomainError,
    Exhausted,
    PermissionDenied,
    Unauthenticated,
    status_code_for,
)
from services.common.handlers import responses, rewrapped
from services.common.metrics import GrpcMetrics, service_name
from services.common.tokens import Principal, TokenVerifier, bearer_token

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)

# Health probes and reflection (grpcurl) are open on every server.
ALWAYS_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Call = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamCall = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
# Runs before the handler; may abort the call.
Guard = Callable[[grpc.aio.ServicerContext], Awaitable[None]]
# Turns an exception into an abort.
ErrorHandler = Callable[[BaseException, grpc.aio.ServicerContext], Awaitable[None]]


def current_principal() -> Principal:
    """The verified caller of the current call; only valid inside a guarded handler."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no caller identity")
    return principal


def _wrap(handler: grpc.RpcMethodHandler, guard: Guard | None, on_error: ErrorHandler | None) -> Any:
    """A copy of handler whose behaviour runs guard first and sends exceptions to on_error."""

    def unary_response(behaviour: Call) -> Call:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if guard is not None:
                    await guard(context)
                return await behaviour(request, context)
            except (grpc.aio.AbortError, GeneratorExit):
                raise
            except Exception as exc:
                if on_error is None:
                    raise
                await on_error(exc, context)

        return call

    def stream_response(behaviour: StreamCall) -> StreamCall:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                if guard is not None:
                    await guard(context)
                async for item in responses(behaviour, request, context):
                    yield item
            except (grpc.aio.AbortError, GeneratorExit):
                raise
            except Exception as exc:
                if on_error is None:
                    raise
                await on_error(exc, context)

        return call

    return rewrapped(handler, unary_response, stream_response)


# Where gRPC's rich error model carries a google.rpc.Status with details.
STATUS_DETAILS_TRAILER = "grpc-status-details-bin"


def _retry_status(code: grpc.StatusCode, exc: Exhausted) -> status_pb2.Status:
    """The wait as google.rpc.RetryInfo, which gRPC clients in every language can read."""
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=exc.retry_after_s)))
    return status_pb2.Status(code=code.value[0], message=exc.message, details=[retry])


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Domain errors become their mapped status; anything unexpected becomes a bare INTERNAL.

    The message of an unexpected error never reaches the caller: it may name hosts or files.
    """

    def __init__(self, table: Mapping[type[DomainError], grpc.StatusCode]) -> None:
        self._table = dict(table)

    async def _on_error(self, exc: BaseException, context: grpc.aio.ServicerContext) -> None:
        if isinstance(exc, DomainError):
            code = status_code_for(exc, self._table)
            trailers: tuple[tuple[str, str | bytes], ...] = ()
            if isinstance(exc, Exhausted) and exc.retry_after_s > 0:
                trailers = (
                    (RETRY_AFTER_TRAILER, str(exc.retry_after_s)),
                    (STATUS_DETAILS_TRAILER, _retry_status(code, exc).SerializeToString()),
                )
            await context.abort(code, exc.message, trailers)
        log.exception("unexpected error in handler", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        return None if handler is None else _wrap(handler, None, self._on_error)


@dataclass(frozen=True)
class AccessPolicy:
    """Which kinds of caller may call which methods (full names, "/pkg.Service/Method")."""

    default_kinds: frozenset[str]
    public_methods: frozenset[str] = frozenset()
    method_kinds: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def kinds_for(self, method: str) -> frozenset[str] | None:
        """The kinds allowed, or None when the method needs no token at all."""
        if method in self.public_methods or method.startswith(ALWAYS_PUBLIC_PREFIXES):
            return None
        return self.method_kinds.get(method, self.default_kinds)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer token locally and enforces the access policy."""

    def __init__(self, verifier: TokenVerifier, policy: AccessPolicy) -> None:
        self._verifier = verifier
        self._policy = policy

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        kinds = self._policy.kinds_for(details.method)
        if kinds is None:
            return handler
        authorization = dict(details.invocation_metadata or ()).get("authorization")

        async def guard(context: grpc.aio.ServicerContext) -> None:
            try:
                principal = await self._verifier.verify(bearer_token(authorization))
            except Unauthenticated as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            if principal.kind not in kinds:
                error = PermissionDenied("this caller may not call this method")
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, error.message)
            _principal.set(principal)

        return _wrap(handler, guard, None)


def server_interceptors(
    table: Mapping[type[DomainError], grpc.StatusCode], verifier: TokenVerifier, policy: AccessPolicy
) -> list[grpc.aio.ServerInterceptor]:
    """The standard chain: metrics outermost, so they count the status the caller gets; then errors,
    so a failure inside the auth guard is mapped too."""
    return [GrpcMetrics(service_name()), ErrorInterceptor(table), AuthInterceptor(verifier, policy)]
