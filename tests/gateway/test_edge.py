"""Admission at the edge: the per-account tokens; over HTTP against a real gateway application on
loopback (conftest's gateway: one stamp at a time, no room to wait, no internal service behind
it); over gRPC through the distributor API's interceptors on a real server, in front of a
servicer that answers as the stamp gate and the ledger would."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from emeterai.v1 import distributor_service_pb2 as dpb
from emeterai.v1 import distributor_service_pb2_grpc, ledger_pb2
from services.common.boot import Registration, start_grpc_server
from services.common.errors import BASE_STATUS_CODES, DomainError, Exhausted, InvalidInput
from services.common.interceptors import server_interceptors
from services.common.settings import GatewaySettings, load_settings
from services.common.tokens import StaticKeys, TokenVerifier
from services.gateway.admission import RETAIL, Overloaded
from services.gateway.distributor import POLICY, SERVICE_NAME
from services.gateway.edge import (
    DISTRIBUTOR_STAMP_RULE,
    ORDER_RULE,
    PURCHASES,
    AdmissionControl,
    GrpcAdmission,
)
from services.gateway.waiting_room import TICKET_HEADER
from tests.common.test_interceptors import AUDIENCE, ISSUER, _jwk, _token
from tests.gateway.conftest import RunningGateway


async def _stamp(
    client: httpx.AsyncClient, token: str, key: str, ticket: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "idempotency-key": key}
    if ticket is not None:
        headers[TICKET_HEADER] = ticket
    answer = await client.post(
        "/v1/stamps",
        headers=headers,
        files={"file": ("a.pdf", b"%PDF-1.7\n", "application/pdf")},
        data={"pin": "123456"},
    )
    assert answer.status_code == 429, answer.text
    return answer.json()["waiting_room"]


async def test_a_waiting_room_ticket_keeps_the_place_of_its_own_request_only(gateway: RunningGateway) -> None:
    first = _token(gateway.key, sub="acct_retail_1", kind="retail")
    second = _token(gateway.key, sub="acct_retail_2", kind="retail")
    # The only slot is taken, and there is no room to wait.
    busy = await gateway.admission.gate.enter(RETAIL)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            early = await _stamp(client, first, "contract")
            assert early["position"] == 1
            assert (await _stamp(client, second, "letter"))["position"] == 2
            # Another document with the first one's ticket arrives now: behind the second account.
            assert (await _stamp(client, first, "invoice", early["ticket"]))["position"] == 3
            # The same request sent again with it is still first in line.
            again = await _stamp(client, first, "contract", early["ticket"])
            assert again["position"] == 1
            # And the ticket is no one else's.
            assert (await _stamp(client, second, "contract", again["ticket"]))["position"] > 1
    finally:
        busy.release()


async def test_a_request_refused_for_capacity_gets_its_token_back_and_one_refused_otherwise_does_not(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        GatewaySettings, data_dir=tmp_path, distributor_stamp_burst=1, distributor_stamps_per_s=0.01
    )
    control = AdmissionControl.from_settings(settings, None, hashlib.sha256(b"tickets").digest())
    for _ in range(2):
        with pytest.raises(Overloaded):
            async with control.token_for(DISTRIBUTOR_STAMP_RULE, "acct"):
                raise Overloaded("stamping is at capacity", 3, 0.0)
    # Refused for what it sent: the token is spent.
    with pytest.raises(InvalidInput):
        async with control.token_for(DISTRIBUTOR_STAMP_RULE, "acct"):
            raise InvalidInput("not a PDF")
    ran = False
    with pytest.raises(Exhausted) as over_the_rate:
        async with control.token_for(DISTRIBUTOR_STAMP_RULE, "acct"):
            ran = True
    assert not ran and not isinstance(over_the_rate.value, Overloaded)
    assert control.rate_limited[DISTRIBUTOR_STAMP_RULE] == 1


@pytest.mark.parametrize("gateway", [{"order_burst": 1, "orders_per_s": 0.01}], indirect=True)
async def test_an_order_refused_by_a_full_purchases_bulkhead_keeps_the_accounts_order_token(
    gateway: RunningGateway,
) -> None:
    token = _token(gateway.key, sub="acct_retail_1", kind="retail")
    headers = {"authorization": f"Bearer {token}", "idempotency-key": "order-1"}
    bulkhead = gateway.admission.bulkheads[PURCHASES]
    held = [await bulkhead.acquire() for _ in range(bulkhead.limit)]
    waiting = [asyncio.create_task(bulkhead.acquire()) for _ in range(bulkhead.queue_size)]
    await asyncio.sleep(0)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        try:
            busy = await client.post("/v1/orders", headers=headers, json={"quantity": 1})
        finally:
            for _ in held:
                bulkhead.release()
            for task in waiting:
                await task
                bulkhead.release()
        assert busy.status_code == 429 and "too busy" in busy.json()["detail"], busy.text
        # Its one token is still there: this one goes on to the ledger (which is not there).
        through = await client.post("/v1/orders", headers=headers, json={"quantity": 1})
        assert through.status_code == 503, through.text
        assert gateway.admission.rate_limited[ORDER_RULE] == 0
        # And spent it.
        limited = await client.post("/v1/orders", headers=headers, json={"quantity": 1})
        assert limited.status_code == 429 and "faster than allowed" in limited.json()["detail"]


class _GateAndLedger(distributor_service_pb2_grpc.DistributorServiceServicer):
    """Behind the interceptors: StampDocument refused as a full stamp gate refuses it, or as a bad
    document; CreateOrder opens an order."""

    def __init__(self) -> None:
        self.outcomes: list[DomainError] = []

    async def StampDocument(self, request: Any, context: Any) -> Any:
        raise self.outcomes.pop(0)

    async def CreateOrder(self, request: Any, context: Any) -> Any:
        return dpb.DistributorServiceCreateOrderResponse(order=ledger_pb2.Order(order_id="ord_1"))


@pytest.fixture
async def distributor_api(tmp_path: Path) -> AsyncIterator[tuple[Any, _GateAndLedger, AdmissionControl, str]]:
    settings = load_settings(
        GatewaySettings,
        data_dir=tmp_path,
        distributor_stamp_burst=1,
        distributor_stamps_per_s=0.0001,
        order_burst=1,
        orders_per_s=0.0001,
        purchase_concurrency=1,
        purchase_queue=0,
    )
    control = AdmissionControl.from_settings(settings, None, hashlib.sha256(b"tickets").digest())
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(StaticKeys([_jwk(key, "k1")]), ISSUER, AUDIENCE)
    servicer = _GateAndLedger()
    server = await start_grpc_server(
        "127.0.0.1:0",
        [
            Registration(
                distributor_service_pb2_grpc.add_DistributorServiceServicer_to_server, servicer, SERVICE_NAME
            )
        ],
        [*server_interceptors(BASE_STATUS_CODES, verifier, POLICY), GrpcAdmission(control)],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    token = _token(key, sub="acct_distributor_1", kind="distributor")
    yield distributor_service_pb2_grpc.DistributorServiceStub(channel), servicer, control, token
    await channel.close()
    await server.stop(0)


async def _refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code(), refused.value.details() or ""


async def test_a_distributor_call_refused_for_capacity_gets_its_token_back(
    distributor_api: tuple[Any, _GateAndLedger, AdmissionControl, str],
) -> None:
    api, servicer, control, token = distributor_api
    auth = (("authorization", f"Bearer {token}"),)
    request = dpb.StampDocumentRequest(document=b"%PDF-1.7\n", idempotency_key="k")
    servicer.outcomes = [
        Overloaded("stamping is at capacity; try again after the wait", 3, 0.0),
        Overloaded("stamping is at capacity; try again after the wait", 3, 0.0),
        InvalidInput("the document is not a PDF"),
    ]
    # One token in the bucket, and each capacity refusal hands it back.
    for _ in range(2):
        code, details = await _refusal(api.StampDocument(request, metadata=auth))
        assert (code, details.split(";")[0]) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "stamping is at capacity",
        )
    assert await _refusal(api.StampDocument(request, metadata=auth)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "the document is not a PDF",
    )
    # The bad document spent it.
    code, details = await _refusal(api.StampDocument(request, metadata=auth))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "faster than allowed" in details
    assert not servicer.outcomes

    # An order turned away by the full purchases bulkhead keeps its token for when it is sent again.
    order = dpb.DistributorServiceCreateOrderRequest(quantity=1, idempotency_key="o")
    bulkhead = control.bulkheads[PURCHASES]
    await bulkhead.acquire()
    try:
        code, details = await _refusal(api.CreateOrder(order, metadata=auth))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "too busy" in details
    finally:
        bulkhead.release()
    assert (await api.CreateOrder(order, metadata=auth)).order.order_id == "ord_1"
    code, details = await _refusal(api.CreateOrder(order, metadata=auth))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "faster than allowed" in details
