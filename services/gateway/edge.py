"""Admission at the edge: the bulkhead each HTTP route and distributor RPC goes through, the
per-account token buckets, and the waiting room in front of retail stamping.

Decisions are made before a request body is read: a refusal costs a token check and a few
hundred bytes, not a parsed upload. Operator routes, the notice, health and the page itself pass
without a bulkhead, so operators can always get in and users can always read what is going on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio

from services.common.errors import DomainError, Exhausted, retry_after_of
from services.common.interceptors import current_principal
from services.common.limits import BucketRule, TokenBuckets, token_buckets
from services.common.settings import GatewaySettings
from services.common.tokens import KIND_RETAIL, Principal, TokenVerifier, bearer_token
from services.gateway import problems
from services.gateway.admission import (
    DISTRIBUTOR,
    RETAIL,
    Bulkhead,
    GradientLimit,
    Overloaded,
    Partition,
    StampGate,
)
from services.gateway.waiting_room import TICKET_HEADER, TicketSigner, TurnedAway, WaitingRoom

PURCHASES = "purchases"
VERIFICATION = "verification"
# Not a bulkhead: retail stamps go through the waiting room and the stamp gate.
RETAIL_STAMPS = "retail-stamps"

RETAIL_STAMP_RULE = "retail-stamps"
DISTRIBUTOR_STAMP_RULE = "distributor-stamps"
ORDER_RULE = "orders"


@dataclass(frozen=True)
class AdmissionControl:
    gate: StampGate
    room: WaitingRoom
    bulkheads: dict[str, Bulkhead]
    buckets: TokenBuckets
    rules: dict[str, BucketRule]
    # Requests each rule's bucket refused, for the metrics; every rule is in it from the start.
    rate_limited: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self.rate_limited.setdefault(rule, 0)

    @classmethod
    def from_settings(
        cls, settings: GatewaySettings, redis_client: redis.asyncio.Redis | None, ticket_key: bytes
    ) -> AdmissionControl:
        s = settings
        most = s.stamp_concurrency_max
        least = min(s.stamp_concurrency_min, most)
        limit = GradientLimit(
            initial=max(least, min(s.stamp_concurrency_initial, most)), min_limit=least, max_limit=most
        )
        gate = StampGate(
            limit,
            [
                Partition(RETAIL, s.retail_stamp_share, s.retail_stamp_queue, s.stamp_queue_timeout_s),
                Partition(
                    DISTRIBUTOR, s.distributor_stamp_share, s.distributor_stamp_queue, s.stamp_queue_timeout_s
                ),
            ],
        )
        timeout = s.bulkhead_queue_timeout_s
        return cls(
            gate=gate,
            room=WaitingRoom(gate, TicketSigner(ticket_key), RETAIL),
            bulkheads={
                RETAIL: Bulkhead(RETAIL, s.retail_concurrency, s.retail_queue, timeout),
                DISTRIBUTOR: Bulkhead(DISTRIBUTOR, s.distributor_concurrency, s.distributor_queue, timeout),
                PURCHASES: Bulkhead(PURCHASES, s.purchase_concurrency, s.purchase_queue, timeout),
                VERIFICATION: Bulkhead(
                    VERIFICATION, s.verification_concurrency, s.verification_queue, timeout
                ),
            },
            buckets=token_buckets(redis_client),
            rules={
                RETAIL_STAMP_RULE: BucketRule(RETAIL_STAMP_RULE, s.retail_stamps_per_s, s.retail_stamp_burst),
                DISTRIBUTOR_STAMP_RULE: BucketRule(
                    DISTRIBUTOR_STAMP_RULE, s.distributor_stamps_per_s, s.distributor_stamp_burst
                ),
                ORDER_RULE: BucketRule(ORDER_RULE, s.orders_per_s, s.order_burst),
            },
        )

    async def token_wait(self, rule: str, account_id: str) -> float:
        """0 when the account's bucket for `rule` gave a token, else the seconds until it has one.
        A stamp job paces itself by it: it waits its turn, which is not counted as a refusal."""
        return await self.buckets.take(self.rules[rule], account_id)

    async def take_token(self, rule: str, account_id: str) -> None:
        """Exhausted when the account has used up its bucket for `rule`."""
        wait = await self.token_wait(rule, account_id)
        if wait > 0:
            self.rate_limited[rule] += 1
            raise Exhausted(
                "this account is sending requests faster than allowed; slow down",
                max(1, math.ceil(wait)),
            )

    @contextlib.asynccontextmanager
    async def token_for(self, rule: str | None, account_id: str | None) -> AsyncIterator[None]:
        """take_token for what runs inside; refused there for capacity (Overloaded: a full
        bulkhead or stamp gate), the account gets its token back. It did nothing with it, and
        sent again after the Retry-After it is told, it must not find its bucket short. Without a
        rule or an account (a call no bucket limits, a caller not known yet) nothing is taken."""
        if rule is None or account_id is None:
            yield
            return
        await self.take_token(rule, account_id)
        try:
            yield
        except Overloaded:
            await self.buckets.put_back(self.rules[rule], account_id)
            raise


def http_bulkhead(method: str, path: str) -> str | None:
    """Which bulkhead an HTTP request goes through; None for what always passes."""
    if not path.startswith("/v1/") or path == "/v1/notice" or path.startswith("/v1/admin/"):
        return None
    if method == "POST":
        if path == "/v1/stamps":
            return RETAIL_STAMPS
        if path.startswith(("/v1/orders", "/v1/payments/", "/v1/dev/payments/")):
            return PURCHASES
        if path in ("/v1/verify", "/v1/previews"):
            return VERIFICATION
    if path.startswith("/v1/serials/"):
        return VERIFICATION
    return RETAIL


PRINCIPAL_STATE = "verified_principal"
STAMP_SLOT_STATE = "stamp_slot"


class HttpAdmission:
    """ASGI middleware: each request through its bulkhead; retail stamps through the account's
    token bucket and the waiting room. The verified caller and the stamp's slot are left in the
    request's state for the route."""

    def __init__(self, app: Any, control: AdmissionControl, verifier: TokenVerifier) -> None:
        self._app = app
        self._control = control
        self._verifier = verifier

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        kind = http_bulkhead(scope["method"], scope["path"])
        if kind is None:
            await self._app(scope, receive, send)
        elif kind == RETAIL_STAMPS:
            await self._stamp(scope, receive, send)
        else:
            await self._through_bulkhead(kind, scope, receive, send)

    async def _through_bulkhead(self, kind: str, scope: Any, receive: Any, send: Any) -> None:
        bulkhead = self._control.bulkheads[kind]
        try:
            principal = None
            if kind == PURCHASES and scope["path"] == "/v1/orders":
                principal = await self._retail_caller(scope)
            async with self._control.token_for(ORDER_RULE, principal.account_id if principal else None):
                await bulkhead.acquire()
        except DomainError as refused:
            await _refuse(scope, receive, send, refused)
            return
        try:
            await self._app(scope, receive, send)
        finally:
            bulkhead.release()

    async def _stamp(self, scope: Any, receive: Any, send: Any) -> None:
        principal = await self._retail_caller(scope)
        if principal is None:
            # The route answers for the missing or wrong token.
            await self._app(scope, receive, send)
            return
        ticket = problems.scope_header(scope, TICKET_HEADER.lower().encode())
        request_key = problems.scope_header(scope, b"idempotency-key")
        try:
            stamp_slot = await self._control.room.enter(principal.account_id, ticket, request_key=request_key)
        except DomainError as refused:
            await _refuse(scope, receive, send, refused)
            return
        try:
            # After the waiting room: in a surge most requests are turned away there, locally,
            # without a round trip to Redis.
            await self._control.take_token(RETAIL_STAMP_RULE, principal.account_id)
        except DomainError as refused:
            stamp_slot.release()
            await _refuse(scope, receive, send, refused)
            return
        scope.setdefault("state", {})[STAMP_SLOT_STATE] = stamp_slot
        try:
            await self._app(scope, receive, send)
        finally:
            stamp_slot.release()

    async def _retail_caller(self, scope: Any) -> Principal | None:
        try:
            token = bearer_token(problems.scope_header(scope, b"authorization") or None)
            principal = await self._verifier.verify(token)
        except DomainError:
            return None
        if principal.kind != KIND_RETAIL:
            return None
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        return principal


async def _refuse(scope: Any, receive: Any, send: Any, refused: DomainError) -> None:
    wait = retry_after_of(refused)
    extra: dict[str, Any] = {}
    if isinstance(refused, TurnedAway):
        extra["waiting_room"] = {
            "ticket": refused.ticket,
            "position": refused.position,
            "retry_after": refused.retry_after_s,
        }
    await problems.send_problem(
        scope, send, problems.http_status_for(refused), refused.message, retry_after_s=wait, **extra
    )


# Distributor RPCs by bulkhead; the stamping RPCs are admitted by the stamp gate in StampingFlow.
# The account's stamp bucket is taken per document: here for StampDocument, by the servicer for
# each document of a BatchStamp stream, by the job runner for each document of a stamp job.
PURCHASE_METHODS = frozenset({"CreateOrder", "CancelOrder", "RefundOrder", "TransferQuota"})
_VERIFICATION_METHODS = frozenset({"VerifyDocument", "LookupSerial"})
_GATED_METHODS = frozenset({"StampDocument", "BatchStamp", "SubmitStampJob"})


class GrpcAdmission(grpc.aio.ServerInterceptor):
    """Distributor RPCs through their bulkheads and token buckets. Installed after the auth
    interceptor, so the caller is known; refusals are Overloaded / Exhausted, which the error
    interceptor sends as RESOURCE_EXHAUSTED with the wait."""

    def __init__(self, control: AdmissionControl) -> None:
        self._control = control

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, method = details.method.rpartition("/")
        if not service.endswith("DistributorService"):
            return handler
        rule = None
        if method in _GATED_METHODS:
            if method != "StampDocument":
                # Their documents take tokens one by one: the servicer's stream, the job runner.
                return handler
            kind = None
            rule = DISTRIBUTOR_STAMP_RULE
        elif method in PURCHASE_METHODS:
            kind = PURCHASES
            rule = ORDER_RULE if method == "CreateOrder" else None
        elif method in _VERIFICATION_METHODS:
            kind = VERIFICATION
        else:
            kind = DISTRIBUTOR
        return self._limited(handler, kind, rule)

    def _limited(self, handler: grpc.RpcMethodHandler, kind: str | None, rule: str | None) -> Any:
        behaviour = handler.unary_unary
        control = self._control

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            # The caller is known only for calls a bucket limits (IssueToken has none).
            account_id = current_principal().account_id if rule is not None else None
            async with control.token_for(rule, account_id):
                if kind is None:
                    return await behaviour(request, context)
                async with control.bulkheads[kind].slot():
                    return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
