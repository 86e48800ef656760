"""Calling other services: channels that carry this service's identity on every call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc

# Keep-alives notice a dead peer (a killed pod) within seconds instead of at the next deadline.
# Reconnect backoff capped at a second: gRPC's default grows from 1 s to 2 minutes, so after a
# restart or an outage of the ledger or a signer, calls kept failing UNAVAILABLE long after the
# service was back. A dial a second to an address that is down costs nothing worth saving.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class ServiceTokenSource:
    """A service token from AuthService, renewed a minute before it expires."""

    def __init__(
        self, auth_address: str, service_name: str, service_secret: str, margin_s: float = 60
    ) -> None:
        self._channel = grpc.aio.insecure_channel(auth_address, options=CHANNEL_OPTIONS)
        self._stub = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self._name = service_name
        self._secret = service_secret
        self._margin = margin_s
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if time.monotonic() >= self._renew_at:
                response = await self._stub.IssueServiceToken(
                    auth_service_pb2.IssueServiceTokenRequest(
                        service_name=self._name, service_secret=self._secret
                    ),
                    timeout=5,
                )
                self._token = response.access_token
                self._renew_at = time.monotonic() + max(response.expires_in_seconds - self._margin, 1)
        return self._token

    async def close(self) -> None:
        await self._channel.close()


class ServiceChannel:
    """A grpc.aio channel whose calls carry this service's token, for generated stubs.

    The token goes straight into each call's metadata. A client interceptor would do the same at
    about twice the cost of the call itself in the caller's CPU (a task and a call object more per
    call), which a gateway making thousands of calls a second feels. The internal services' calls
    are all unary, and each is awaited for its response, as the stubs are used throughout; other
    channel methods are the channel's own.
    """

    def __init__(self, channel: grpc.aio.Channel, source: ServiceTokenSource) -> None:
        self._channel = channel
        self._source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def _metadata(self, metadata: Any) -> tuple[tuple[str, str], ...]:
        own = ("authorization", f"Bearer {await self._source.token()}")
        return (own, *(metadata or ()))

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Awaitable[Any]]:
        call = self._channel.unary_unary(method, *args, **kwargs)

        async def with_token(request: Any, *, metadata: Any = None, **options: Any) -> Any:
            return await call(request, metadata=await self._metadata(metadata), **options)

        return with_token


def service_channel(addresses: str | Sequence[str], source: ServiceTokenSource) -> ServiceChannel:
    """A channel to one or several replicas of an internal service, calling as this service.

    Several addresses are balanced round-robin by gRPC itself.
    """
    options = list(CHANNEL_OPTIONS)
    if isinstance(addresses, str):
        target = addresses
    else:
        target = "ipv4:" + ",".join(addresses)
        options.append(("grpc.lb_policy_name", "round_robin"))
    return ServiceChannel(grpc.aio.insecure_channel(target, options=options), source)
