"""The gateway's metrics, scraped over HTTP while a real gateway application serves on loopback:
requests by route template (admission's refusals too), and admission read at scrape time.

The internal services are not needed for what is asked here: every request below is answered
before any of them would be called (conftest's gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from services.common.metrics import MetricsServer
from services.gateway.admission import RETAIL
from services.gateway.metrics import UNMATCHED_ROUTE, RouteTemplates
from tests.common.test_interceptors import _token
from tests.gateway.conftest import RunningGateway
from tests.metrics_scrape import Scrape, scrape

REQUESTS = "emeterai_http_requests_total"
SECONDS_COUNT = "emeterai_http_request_seconds_count"


@pytest.fixture
def metrics_port() -> Iterator[int]:
    server = MetricsServer.start("127.0.0.1:0")
    yield server.port
    server.stop()


def _count(scraped: Scrape, route: str, method: str, status: str) -> float:
    return scraped.value(REQUESTS, route=route, method=method, status=status) or 0.0


async def test_requests_are_counted_by_route_template_never_by_raw_path(
    gateway: RunningGateway, metrics_port: int
) -> None:
    before = scrape(metrics_port)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        # Answered by the route itself: 22 letters and digits it is not.
        assert (await client.get("/v1/serials/not-a-serial")).status_code == 400
        assert (await client.get("/v1/serials/also-not-one")).status_code == 400
        # Refused by the route's caller check before anything else runs.
        assert (await client.get("/v1/stamps/st_123/pdf")).status_code == 401
        assert (await client.get("/v1/no-such-thing/42")).status_code == 404
        assert (await client.delete("/healthz")).status_code == 405
    after = scrape(metrics_port)

    def added(route: str, method: str, status: str) -> float:
        return _count(after, route, method, status) - _count(before, route, method, status)

    assert added("/healthz", "GET", "200") == 1
    assert added("/v1/serials/{serial}", "GET", "400") == 2
    assert added("/v1/stamps/{stamp_id}/pdf", "GET", "401") == 1
    assert added(UNMATCHED_ROUTE, "GET", "404") == 1
    assert added("/healthz", "DELETE", "405") == 1
    routes = {series["route"] for series in after.series(REQUESTS)}
    assert not {r for r in routes if "not-a-serial" in r or "st_123" in r or "no-such-thing" in r}
    timed = after.value(SECONDS_COUNT, route="/v1/serials/{serial}", method="GET", status="400") or 0
    assert (
        timed - (before.value(SECONDS_COUNT, route="/v1/serials/{serial}", method="GET", status="400") or 0)
        == 2
    )


async def test_a_stamp_turned_away_by_the_waiting_room_is_counted_under_its_route_and_as_a_rejection(
    gateway: RunningGateway, metrics_port: int
) -> None:
    before = scrape(metrics_port)
    assert before.value("emeterai_stamp_gate_concurrency_limit") == 1
    assert (
        before.value("emeterai_admission_rejections_total", queue="retail-stamps", reason="turned_away") == 0
    )
    # The only slot is taken, and there is no room to wait.
    busy = await gateway.admission.gate.enter(RETAIL)
    try:
        during = scrape(metrics_port)
        assert during.value("emeterai_admission_in_flight", queue="retail-stamps") == 1
        token = _token(gateway.key, sub="acct_retail_1", kind="retail")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            refused = await client.post(
                "/v1/stamps",
                headers={"authorization": f"Bearer {token}", "idempotency-key": "k1"},
                files={"file": ("a.pdf", b"%PDF-1.7\n", "application/pdf")},
                data={"pin": "123456"},
            )
        assert refused.status_code == 429 and refused.json()["waiting_room"]["position"] == 1
    finally:
        busy.release()
    after = scrape(metrics_port)
    assert _count(after, "/v1/stamps", "POST", "429") - _count(before, "/v1/stamps", "POST", "429") == 1
    assert (
        after.value("emeterai_admission_rejections_total", queue="retail-stamps", reason="turned_away") == 1
    )
    assert after.value("emeterai_admission_in_flight", queue="retail-stamps") == 0
    for queue in (
        "retail",
        "distributor",
        "purchases",
        "verification",
        "retail-stamps",
        "distributor-stamps",
    ):
        assert after.value("emeterai_admission_queue_depth", queue=queue) == 0


async def test_queue_depth_is_read_when_scraped(gateway: RunningGateway, metrics_port: int) -> None:
    bulkhead = gateway.admission.bulkheads["verification"]
    held = [await bulkhead.acquire() for _ in range(bulkhead.limit)]
    waiting = [asyncio.create_task(bulkhead.acquire()) for _ in range(3)]
    await asyncio.sleep(0.05)
    try:
        scraped = await asyncio.to_thread(scrape, metrics_port)
        assert scraped.value("emeterai_admission_queue_depth", queue="verification") == 3
        assert scraped.value("emeterai_admission_in_flight", queue="verification") == bulkhead.limit
    finally:
        for _ in held:
            bulkhead.release()
        await asyncio.gather(*waiting)
        for _ in waiting:
            bulkhead.release()
    assert (await asyncio.to_thread(scrape, metrics_port)).value(
        "emeterai_admission_queue_depth", queue="verification"
    ) == 0


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/v1/stamps", "/v1/stamps"),
        ("GET", "/v1/stamps/st_1/pdf", "/v1/stamps/{stamp_id}/pdf"),
        ("POST", "/v1/orders/ord_1/refund", "/v1/orders/{order_id}/refund"),
        ("DELETE", "/v1/orders/ord_1", "/v1/orders/{order_id}"),
        ("GET", "/static/app.js", "/static/{name}"),
        ("GET", "/healthz", "/healthz"),
        ("GET", "/v1/nothing/here", UNMATCHED_ROUTE),
    ],
)
async def test_a_path_answered_before_routing_finds_its_template(
    gateway: RunningGateway, method: str, path: str, template: str
) -> None:
    templates = RouteTemplates(gateway.app.router.routes)
    assert templates.template({"type": "http", "method": method, "path": path, "root_path": ""}) == template
