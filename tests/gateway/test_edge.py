"""Admission at the edge: the per-account tokens, and over HTTP against a real gateway application
on loopback (conftest's gateway: one stamp at a time, no room to wait, no internal service behind
it)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.errors import Exhausted, InvalidInput
from services.common.settings import GatewaySettings, load_settings
from services.gateway.admission import RETAIL, Overloaded
from services.gateway.edge import DISTRIBUTOR_STAMP_RULE, ORDER_RULE, PURCHASES, AdmissionControl
from services.gateway.waiting_room import TICKET_HEADER
from tests.common.test_interceptors import _token
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
