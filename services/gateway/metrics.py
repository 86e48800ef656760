"""The gateway's metrics: HTTP requests by route template, stamps by how the saga ended, and
admission (queues, refusals, the stamp gate's limit) read when Prometheus scrapes.

See docs/metrics.md for what an operator reads from each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.routing import BaseRoute, Match

from services.common.metrics import LATENCY_BUCKETS, Probe
from services.gateway.admission import DISTRIBUTOR, RETAIL
from services.gateway.edge import (
    DISTRIBUTOR_STAMP_RULE,
    ORDER_RULE,
    PURCHASES,
    RETAIL_STAMP_RULE,
    RETAIL_STAMPS,
    AdmissionControl,
)

# HTTP ----------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "emeterai_http_requests",
    "HTTP requests the gateway answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "emeterai_http_request_seconds",
    "Time from an HTTP request reaching the gateway to its answer, by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
# The route of a path no route matches: raw paths would make a series of every path anyone tries.
UNMATCHED_ROUTE = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _leaf_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        if getattr(route, "path_format", None) is not None:
            yield route
        else:
            # An included router: FastAPI keeps it whole, its routes on the router it was made from.
            router = getattr(route, "original_router", route)
            yield from _leaf_routes(getattr(router, "routes", []))


class RouteTemplates:
    """Which route template a request's path belongs to, for requests answered before routing
    (admission refusals) or that no route took (404)."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self._fixed: dict[str, str] = {}
        self._templated: list[BaseRoute] = []
        for route in _leaf_routes(routes):
            template: str = route.path_format  # type: ignore[attr-defined]
            if "{" in template:
                self._templated.append(route)
            else:
                self._fixed.setdefault(template, template)

    def template(self, scope: Any) -> str:
        fixed = self._fixed.get(scope["path"])
        if fixed is not None:
            return fixed
        for route in self._templated:
            # PARTIAL is the path with another method (405): still that route.
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return route.path_format  # type: ignore[attr-defined]
        return UNMATCHED_ROUTE


class HttpMetrics:
    """ASGI middleware, outermost: counts and times every answer, including the refusals that
    admission sends before any route runs, under the route's template, never the raw path."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._templates: RouteTemplates | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        # What the client sees when the application fails before answering.
        status = 500

        async def send_counted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_counted)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Any, status: int, seconds: float) -> None:
        # Routing leaves the route it chose in the scope; only requests no route ran for are matched here.
        route = scope.get("route")
        template = getattr(route, "path_format", None) or self._template(scope)
        method = scope["method"] if scope["method"] in _METHODS else "other"
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (template, method, str(status))
            children = self._children[key] = (HTTP_REQUESTS.labels(*labels), HTTP_SECONDS.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def _template(self, scope: Any) -> str:
        if self._templates is None:
            # The application's routes are all in place by the first request.
            self._templates = RouteTemplates(scope["app"].router.routes)
        return self._templates.template(scope)


# Stamps --------------------------------------------------------------------------------------

# How a stamp's saga ended (docs/metrics.md).
COMMITTED = "committed"
REPLAYED = "replayed"
RELEASED = "released"
REFUSED = "refused"
FAILED = "failed"
STAMP_OUTCOMES = (COMMITTED, REPLAYED, RELEASED, REFUSED, FAILED)

STAMPS = Counter(
    "emeterai_stamps",
    "Stamps by channel and how their saga ended.",
    ["channel", "outcome"],
)
_STAMP_CHILDREN = {
    (channel, outcome): STAMPS.labels(channel, outcome)
    for channel in (RETAIL, DISTRIBUTOR)
    for outcome in STAMP_OUTCOMES
}


def count_stamp(channel: str, outcome: str) -> None:
    """channel: the stamp gate's partition the stamp ran under (retail, distributor)."""
    _STAMP_CHILDREN[channel, outcome].inc()


# Admission -----------------------------------------------------------------------------------

DISTRIBUTOR_STAMPS = "distributor-stamps"
# The stamp gate's partitions, named as queues apart from the retail and distributor bulkheads.
GATE_QUEUES = {RETAIL: RETAIL_STAMPS, DISTRIBUTOR: DISTRIBUTOR_STAMPS}
# The queue each token bucket stands in front of.
RULE_QUEUES = {
    RETAIL_STAMP_RULE: RETAIL_STAMPS,
    DISTRIBUTOR_STAMP_RULE: DISTRIBUTOR_STAMPS,
    ORDER_RULE: PURCHASES,
}


def read_admission(control: AdmissionControl | None) -> list[Metric]:
    depth = GaugeMetricFamily(
        "emeterai_admission_queue_depth", "Requests waiting in each admission queue now.", labels=["queue"]
    )
    in_flight = GaugeMetricFamily(
        "emeterai_admission_in_flight",
        "Requests admitted through each queue and not finished.",
        labels=["queue"],
    )
    rejections = CounterMetricFamily(
        "emeterai_admission_rejections",
        "Requests refused at admission, by queue and reason.",
        labels=["queue", "reason"],
    )
    limit = GaugeMetricFamily(
        "emeterai_stamp_gate_concurrency_limit",
        "Stamps the stamp gate lets run at once now, over every channel (the adaptive limit).",
    )
    if control is None:
        return [depth, in_flight, rejections, limit]
    for name, bulkhead in control.bulkheads.items():
        depth.add_metric([name], bulkhead.queued)
        in_flight.add_metric([name], bulkhead.in_flight)
        rejections.add_metric([name, "queue_full"], bulkhead.stats.rejected)
        rejections.add_metric([name, "timed_out"], bulkhead.stats.timed_out)
    gate = control.gate
    for partition, stats in gate.stats.items():
        queue = GATE_QUEUES.get(partition, partition)
        depth.add_metric([queue], gate.queued(partition))
        in_flight.add_metric([queue], gate.in_flight_of(partition))
        rejections.add_metric([queue, "queue_full"], stats.rejected)
        rejections.add_metric([queue, "timed_out"], stats.timed_out)
        rejections.add_metric([queue, "evicted"], stats.evicted)
    rejections.add_metric([RETAIL_STAMPS, "turned_away"], control.room.turned_away)
    for rule, count in control.rate_limited.items():
        rejections.add_metric([RULE_QUEUES.get(rule, rule), "rate_limited"], count)
    limit.add_metric([], gate.limit.limit)
    return [depth, in_flight, rejections, limit]


ADMISSION = Probe(read_admission)
