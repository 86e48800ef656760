"""Admission at the edge over HTTP, against a real gateway application on loopback (conftest's
gateway: one stamp at a time, no room to wait, no internal service behind it)."""

from __future__ import annotations

from typing import Any

import httpx

from services.gateway.admission import RETAIL
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
