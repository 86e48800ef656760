"""The load of bench/chaos.py: retail users and distributors doing what real clients do through
outages, and the record of what each of them saw, for the checks afterwards.

A client sends a request again under the same idempotency key after a lost connection, a 503 or
UNAVAILABLE (at most RETRIES times), after a 429 / RESOURCE_EXHAUSTED once its Retry-After is up,
and after 409 / ABORTED (the first request with the key is still in flight) a moment later. Only
when the ledger says the key's hold was released ("send the document again with a new key") does
it take a new key. Anything else is an answer it gives up on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import jwt
from runfile import FAILED, Answer, grpc_outcome, http_outcome
from surge import PIN, Account, Distributor, Tally, sign_in

from emeterai.v1 import common_pb2, distributor_service_pb2, ledger_pb2

# Transient failures (no answer, 503, UNAVAILABLE) one request is sent again after, same key:
# with the waits between them, about 25 s of outage ridden out.
RETRIES = 10
# Longest one operation goes on, counting every retry: past a hold's TTL and the sweep, so a key
# left in flight by a killed gateway is seen released and the document sent again.
OP_BUDGET_S = 45.0
# What the ledger says when a key's hold was released and the document must go again.
RELEASED_HINT = "new key"
PAID = {"paid", "partially_refunded", "refunded"}
PAID_STATUSES = {ledger_pb2.ORDER_STATUS_PAID, ledger_pb2.ORDER_STATUS_PARTIALLY_REFUNDED}
TRANSIENT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
# Not a clear error: what no answer to a client should be.
UNCLEAR_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@dataclass(eq=False)
class StampOp:
    """One document a client wanted stamped, every key it used for it, and what it was answered."""

    channel: str  # "retail" or "distributor"
    owner: str  # the account id
    document: str  # the corpus file's name
    keys: list[str] = field(default_factory=list)
    stamp_id: str = ""
    serial: str = ""
    # (stamp id, serial) of every later answer to the same key: each must name the same stamp.
    replays: list[tuple[str, str]] = field(default_factory=list)
    # SHA-256 of the stamped PDF in the answer (the distributor API sends it back).
    answered_sha256: bytes = b""
    error: str = ""
    # An answer that was not a clear error: a 5xx other than 503, or an error without problem+json.
    unclear: str = ""
    # "<t> <error>" of every failed try, for the summary of documents not stamped.
    history: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.stamp_id)

    def note(self, t: float, error: str) -> None:
        self.error = error
        self.history.append(f"{t:.1f}s {error[:60]}")


@dataclass(eq=False)
class OrderOp:
    """One purchase: the order (under one key, sent again as needed) and its sandbox payment."""

    channel: str
    owner: str
    key: str
    quantity: int
    # Every order id an answer to the key named: one, or it was a second order.
    order_ids: set[str] = field(default_factory=set)
    paid: bool = False
    error: str = ""
    unclear: str = ""

    @property
    def succeeded(self) -> bool:
        return self.paid


@dataclass
class Record:
    """Everything the load sent and was answered, in seconds since the run started."""

    started: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    stamps: list[StampOp] = field(default_factory=list)
    orders: list[OrderOp] = field(default_factory=list)
    sign_ins: list[str] = field(default_factory=list)  # "" when it worked, else the error
    # Requests that got no answer within the client's timeout: a hang somewhere, not a refusal.
    timeouts: int = 0

    def t(self) -> float:
        return time.monotonic() - self.started

    def answered(self, sent: float, outcome: str) -> None:
        self.answers.append(Answer(sent, self.t(), outcome))


def account_id_of(bearer: str) -> str:
    """The account a token acts for, read from its (already trusted) claims."""
    token = bearer.removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


@dataclass
class Reply:
    status: int  # 0: no answer, the connection was lost
    headers: httpx.Headers | None = None
    body: Any = None

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else ""

    @property
    def retry_after(self) -> float:
        value = self.headers.get("retry-after", "") if self.headers is not None else ""
        return float(value) if value.isdigit() else 0.0

    def unclear(self) -> str:
        """Why this error answer is not a clear one, or ""."""
        if self.status == 0 or self.status < 400:
            return ""
        problem = self.headers is not None and self.headers.get("content-type", "").startswith(
            "application/problem+json"
        )
        if self.status >= 500 and self.status != 503:
            return f"HTTP {self.status}: {self.detail or self.body!r:.200}"
        return "" if problem else f"HTTP {self.status} without problem+json"


class RetailUser:
    """A signed-in retail account buying units and stamping PDFs through the HTTP API."""

    def __init__(
        self, http: httpx.AsyncClient, account: Account, record: Record, documents: dict[str, bytes]
    ) -> None:
        self.http = http
        self.account = account
        self.account_id = account_id_of(account.headers["Authorization"])
        self.record = record
        self.documents = documents

    async def _send(self, method: str, path: str, **kwargs: Any) -> Reply:
        sent = self.record.t()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.record.answered(sent, FAILED)
            self.record.timeouts += isinstance(exc, httpx.TimeoutException)
            return Reply(0)
        self.record.answered(sent, http_outcome(response.status_code))
        try:
            body = response.json()
        except ValueError:
            body = response.text[:300]
        return Reply(response.status_code, response.headers, body)

    async def buy(self, key: str, quantity: int, repeat: bool, deadline: float) -> OrderOp:
        """An order (sent twice under its key when `repeat`, as a client unsure of the first
        answer does), then its payment, checking the order before paying again."""
        op = OrderOp("retail", self.account_id, key, quantity)
        self.record.orders.append(op)
        headers = self.account.headers | {"Idempotency-Key": key}
        for _ in range(2 if repeat else 1):
            reply = await self._until_answered(
                "POST", "/v1/orders", deadline, json={"quantity": quantity}, headers=headers
            )
            if reply.status != 201:
                op.error, op.unclear = f"order: {reply.status} {reply.detail}", reply.unclear()
                return op
            op.order_ids.add(reply.body["id"])
        order_id = min(op.order_ids)
        for _ in range(RETRIES):
            paid = await self._send("POST", f"/v1/dev/payments/{order_id}/pay")
            if paid.status == 200 and paid.body.get("webhook_status") == 200:
                op.paid = True
                return op
            op.unclear = op.unclear or paid.unclear()
            # The payment may have gone through before the answer was lost: look before paying again.
            found = await self._send("GET", f"/v1/orders/{order_id}", headers=self.account.headers)
            if found.status == 200 and found.body.get("status") in PAID:
                op.paid = True
                return op
            if self.record.t() >= deadline:
                break
            await asyncio.sleep(1.0)
        op.error = f"payment: {paid.status} {paid.detail}"
        return op

    async def _until_answered(self, method: str, path: str, deadline: float, **kwargs: Any) -> Reply:
        """The request, sent again while it gets no answer, a 503 or a 429, within the bounds."""
        reply = Reply(0)
        for _ in range(RETRIES):
            reply = await self._send(method, path, **kwargs)
            if reply.status not in (0, 429, 503) or self.record.t() >= deadline:
                return reply
            await asyncio.sleep(min(reply.retry_after or 1.0, 5.0))
        return reply

    async def stamp(self, key_prefix: str, document: str, repeat: bool, deadline: float) -> StampOp:
        """One document, through outages, the waiting room and released holds, until stamped or
        given up; sent once more under its key afterwards when `repeat`."""
        op = StampOp("retail", self.account_id, document, keys=[f"{key_prefix}-0"])
        self.record.stamps.append(op)
        content = self.documents[document]
        ticket = ""
        transient = 0
        while self.record.t() < deadline:
            headers = self.account.headers | {"Idempotency-Key": op.keys[-1]}
            if ticket:
                headers["Waiting-Room-Ticket"] = ticket
            reply = await self._send(
                "POST",
                "/v1/stamps",
                headers=headers,
                data={"pin": PIN, "doc_name": document},
                files={"file": (document, content, "application/pdf")},
            )
            if reply.status == 201:
                op.stamp_id, op.serial = reply.body["id"], reply.body["serial"]
                op.error = ""
                if repeat:
                    again = await self._send(
                        "POST",
                        "/v1/stamps",
                        headers=self.account.headers | {"Idempotency-Key": op.keys[-1]},
                        data={"pin": PIN, "doc_name": document},
                        files={"file": (document, content, "application/pdf")},
                    )
                    if again.status == 201:
                        op.replays.append((again.body["id"], again.body["serial"]))
                return op
            op.note(self.record.t(), f"{reply.status} {reply.detail}")
            if reply.status == 429:
                room = reply.body.get("waiting_room") if isinstance(reply.body, dict) else None
                ticket = (room or {}).get("ticket", ticket)
                await asyncio.sleep(min(reply.retry_after or 1.0, 5.0))
            elif reply.status == 409 and RELEASED_HINT in reply.detail:
                op.keys.append(f"{key_prefix}-{len(op.keys)}")
                ticket = ""
            elif reply.status == 409 and reply.retry_after:
                await asyncio.sleep(min(reply.retry_after, 5.0))
            elif reply.status in (0, 503) and transient < RETRIES:
                transient += 1
                await asyncio.sleep(backoff(transient))
            else:
                op.unclear = reply.unclear()
                return op
        return op

    async def download(self, stamp_id: str) -> bytes | None:
        reply = await self.http.get(f"/v1/stamps/{stamp_id}/pdf", headers=self.account.headers)
        return reply.content if reply.status_code == 200 else None

    async def balance(self) -> dict[str, int]:
        reply = await self.http.get("/v1/balance", headers=self.account.headers)
        reply.raise_for_status()
        return reply.json()


async def new_sign_in(http: httpx.AsyncClient, record: Record) -> None:
    """A new user signing in: a code by message, the code for tokens, a PIN. While Redis is
    down, codes are refused (UNAVAILABLE, 503): a clear error that costs nothing."""
    sent = record.t()
    try:
        await sign_in(http, Tally())
    except httpx.HTTPStatusError as exc:
        record.answered(sent, http_outcome(exc.response.status_code))
        record.sign_ins.append(f"{exc.response.status_code}")
        return
    except (httpx.HTTPError, KeyError, IndexError, AttributeError, ValueError) as exc:
        record.answered(sent, FAILED)
        record.sign_ins.append(type(exc).__name__)
        return
    record.answered(sent, http_outcome(200))
    record.sign_ins.append("")


@dataclass
class GrpcReply:
    response: Any = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    retry_after: float = 0.0


class DistributorClient:
    """A distributor's system on the gRPC API: single documents, batches, purchases."""

    def __init__(
        self, distributor: Distributor, http: httpx.AsyncClient, record: Record, documents: dict[str, bytes]
    ) -> None:
        self.api = distributor.api
        self.metadata = distributor.metadata
        self.account_id = account_id_of(dict(distributor.metadata)["authorization"])
        self.http = http
        self.record = record
        self.documents = documents

    async def _call(self, method: str, request: Any, timeout: float = 40) -> GrpcReply:
        sent = self.record.t()
        try:
            response = await getattr(self.api, method)(request, metadata=self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self.record.answered(sent, grpc_outcome(exc.code().value[0]))
            self.record.timeouts += exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            return GrpcReply(None, exc.code(), exc.details() or "", _retry_after(exc))
        self.record.answered(sent, grpc_outcome(0))
        return GrpcReply(response)

    def _request(self, document: str, key: str) -> distributor_service_pb2.StampDocumentRequest:
        return distributor_service_pb2.StampDocumentRequest(
            document=self.documents[document],
            idempotency_key=key,
            metadata=common_pb2.DocumentMetadata(name=document),
        )

    async def stamp(self, key_prefix: str, document: str, repeat: bool, deadline: float) -> StampOp:
        """StampDocument, retried as a client does until stamped or given up."""
        op = StampOp("distributor", self.account_id, document, keys=[f"{key_prefix}-0"])
        self.record.stamps.append(op)
        transient = 0
        while self.record.t() < deadline:
            reply = await self._call("StampDocument", self._request(document, op.keys[-1]))
            if reply.code == grpc.StatusCode.OK:
                _stamped(op, reply.response.stamp, reply.response.stamped_document)
                if repeat:
                    again = await self._call("StampDocument", self._request(document, op.keys[-1]))
                    if again.code == grpc.StatusCode.OK:
                        op.replays.append((again.response.stamp.stamp_id, again.response.stamp.serial))
                return op
            op.note(self.record.t(), f"{reply.code.name} {reply.details}")
            wait = _next_try(op, key_prefix, reply.code, reply.details, reply.retry_after, transient)
            if wait is None:
                return op
            transient += reply.code in TRANSIENT_CODES
            await asyncio.sleep(wait)
        return op

    async def batch(self, key_prefix: str, documents: list[str], deadline: float) -> list[StampOp]:
        """One BatchStamp stream of `documents`; what a broken stream or an item's transient error
        left unstamped goes again in a new stream, under the same keys."""
        ops = [
            StampOp("distributor", self.account_id, name, keys=[f"{key_prefix}-{n}-0"])
            for n, name in enumerate(documents)
        ]
        self.record.stamps.extend(ops)
        transient = [0] * len(ops)
        pending = set(range(len(ops)))
        # Bounded by the deadline; every round but a new key's waits a second or more.
        for _ in range(round(OP_BUDGET_S) * 2):
            if not pending or self.record.t() >= deadline:
                break
            waiting = {ops[n].keys[-1]: n for n in sorted(pending)}
            requests = [
                distributor_service_pb2.BatchStampRequest(
                    client_ref=key, document=self._request(ops[n].document, key)
                )
                for key, n in waiting.items()
            ]
            sent = self.record.t()
            wait = 0.0
            try:
                async for result in self.api.BatchStamp(iter(requests), metadata=self.metadata, timeout=60):
                    self.record.answered(sent, grpc_outcome(result.code))
                    n = waiting.pop(result.client_ref, None)
                    if n is None:
                        continue
                    code = _status(result.code)
                    if code == grpc.StatusCode.OK:
                        _stamped(ops[n], result.stamp, result.stamped_document)
                        pending.discard(n)
                        continue
                    ops[n].note(self.record.t(), f"{code.name} {result.message}")
                    next_try = _next_try(ops[n], f"{key_prefix}-{n}", code, result.message, 1.0, transient[n])
                    if next_try is None:
                        pending.discard(n)
                    else:
                        transient[n] += code in TRANSIENT_CODES
                        wait = max(wait, next_try)
            except grpc.aio.AioRpcError as exc:
                # The stream broke: the documents without a result go again under their keys.
                for n in waiting.values():
                    self.record.answered(sent, grpc_outcome(exc.code().value[0]))
                    ops[n].note(self.record.t(), f"stream {exc.code().name} {exc.details()}")
                    transient[n] += 1
                    if exc.code() in UNCLEAR_CODES:
                        ops[n].unclear = ops[n].error
                    if exc.code() in UNCLEAR_CODES or transient[n] > RETRIES:
                        pending.discard(n)
                wait = max(wait, 1.0)
            await asyncio.sleep(wait)
        return ops

    async def buy(self, key: str, quantity: int, deadline: float) -> OrderOp:
        """CreateOrder under one key, sent again through outages, then its sandbox payment."""
        op = OrderOp("distributor", self.account_id, key, quantity)
        self.record.orders.append(op)
        request = distributor_service_pb2.DistributorServiceCreateOrderRequest(
            quantity=quantity, idempotency_key=key
        )
        for _ in range(RETRIES):
            reply = await self._call("CreateOrder", request)
            if reply.code == grpc.StatusCode.OK:
                op.order_ids.add(reply.response.order.order_id)
                break
            op.error = f"order: {reply.code.name} {reply.details}"
            if reply.code not in TRANSIENT_CODES | {grpc.StatusCode.RESOURCE_EXHAUSTED}:
                op.unclear = reply.code.name if reply.code in UNCLEAR_CODES else ""
                return op
            if self.record.t() >= deadline:
                return op
            await asyncio.sleep(max(reply.retry_after, 1.0))
        if not op.order_ids:
            return op
        order_id = min(op.order_ids)
        get = distributor_service_pb2.DistributorServiceGetOrderRequest(order_id=order_id)
        for _ in range(RETRIES):
            sent = self.record.t()
            try:
                paid = await self.http.post(f"/v1/dev/payments/{order_id}/pay")
                self.record.answered(sent, http_outcome(paid.status_code))
                if paid.status_code == 200 and paid.json().get("webhook_status") == 200:
                    op.paid = True
                    op.error = ""
                    return op
            except httpx.TransportError:
                self.record.answered(sent, FAILED)
            found = await self._call("GetOrder", get)
            if found.code == grpc.StatusCode.OK and found.response.order.status in PAID_STATUSES:
                op.paid, op.error = True, ""
                return op
            op.error = "payment not confirmed"
            if self.record.t() >= deadline:
                break
            await asyncio.sleep(1.0)
        return op

    async def download(self, stamp_id: str) -> bytes | None:
        try:
            found = await self.api.DownloadStampedDocument(
                distributor_service_pb2.DownloadStampedDocumentRequest(stamp_id=stamp_id),
                metadata=self.metadata,
                timeout=30,
            )
        except grpc.aio.AioRpcError:
            return None
        return found.stamped_document

    async def balance(self) -> dict[str, int]:
        found = await self.api.GetBalance(
            distributor_service_pb2.DistributorServiceGetBalanceRequest(), metadata=self.metadata, timeout=30
        )
        books = found.balance
        return {
            name: getattr(books, name) for name in ("available", "held", "consumed", "refunded", "purchased")
        }


def backoff(tries: int) -> float:
    """Seconds before the next try after `tries` transient failures in a row."""
    return min(0.5 * tries, 3.0)


def _stamped(op: StampOp, stamp: Any, document: bytes) -> None:
    op.stamp_id, op.serial, op.error = stamp.stamp_id, stamp.serial, ""
    op.answered_sha256 = hashlib.sha256(document).digest()


def _status(code: int) -> grpc.StatusCode:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.UNKNOWN


def _retry_after(exc: grpc.aio.AioRpcError) -> float:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after" and str(value).isdigit():
            return float(value)
    return 0.0


def _next_try(
    op: StampOp, key_prefix: str, code: grpc.StatusCode, details: str, retry_after: float, transient: int
) -> float | None:
    """Seconds to wait before the document's next try (a new key on op when its hold was
    released), or None to give up on it."""
    if code == grpc.StatusCode.FAILED_PRECONDITION and RELEASED_HINT in details:
        op.keys.append(f"{key_prefix}-{len(op.keys)}")
        return 0.0
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return min(retry_after or 1.0, 5.0)
    if code == grpc.StatusCode.ABORTED:
        # The gateway's own suggestion for a key in flight (RequestInFlight).
        return 2.0
    if code in TRANSIENT_CODES and transient < RETRIES:
        return backoff(transient + 1)
    if code in UNCLEAR_CODES:
        op.unclear = f"{code.name} {details}"
    return None
