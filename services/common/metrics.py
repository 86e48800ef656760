"""Prometheus metrics, the same way in every service: the /metrics endpoint, the gRPC server's
request metrics, and probes that read a live object when Prometheus scrapes.

Metrics live in prometheus_client's default registry: one service runs per process, so the
registry is that service's. The endpoint is served from threads of its own, so a scrape never
waits on the event loop and never makes it wait (probes read plain counters and lengths, or the
database from the scrape's thread). See docs/metrics.md for what each metric tells an operator.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Generic, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.metrics_core import Metric

from services.common.handlers import responses, rewrapped

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

# From a cached read (a millisecond) to a slow stamp; past 30 s a call has met its deadline anyway.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRPC_REQUESTS = Counter(
    "emeterai_grpc_server_requests",
    "gRPC calls this server finished, by method and status code.",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "emeterai_grpc_server_request_seconds",
    "Time from a gRPC call reaching this server to its status, by method and status code.",
    ["service", "method", "code"],
    buckets=LATENCY_BUCKETS,
)


class _ProcessService:
    # The service this process runs ("quota", "gateway"...), named once at start by run_service,
    # as the logs name it; the `service` label of its gRPC metrics.
    name = ""


def name_service(name: str) -> None:
    _ProcessService.name = name


def service_name() -> str:
    return _ProcessService.name


# The endpoint -------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    # A scrape every few seconds is not worth a log line.
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    exposition = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"metrics are at {METRICS_PATH}\n".encode()]
        return exposition(environ, start_response)

    return app


class MetricsServer:
    """/metrics in Prometheus text format (OpenMetrics when asked), served from its own threads."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._stopped = False

    @classmethod
    def start(cls, address: str, registry: CollectorRegistry = REGISTRY) -> MetricsServer:
        """Listen on address ("host:port"; port 0 picks one, "[::]:9100" for IPv6)."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]")

        class Server(_Server):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        httpd = make_server(host, int(port), _metrics_app(registry), Server, handler_class=_QuietHandler)
        thread = threading.Thread(target=httpd.serve_forever, name="metrics-server", daemon=True)
        thread.start()
        log.info("serving metrics", extra={"address": f"{address.rpartition(':')[0]}:{httpd.server_port}"})
        return cls(httpd, thread)

    @property
    def port(self) -> int:
        return self._httpd.server_port

    def stop(self) -> None:
        """Stop listening and wait for the serving thread; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


# Probes -------------------------------------------------------------------------------------

T = TypeVar("T")


class Probe(Generic[T]):
    """Metrics computed from a live object when Prometheus scrapes, instead of on every change.

    `read(subject)` returns the metric families with the subject's samples, and with none when
    subject is None (before anything is attached; also how the registry learns the names). The
    object attached last is read: one service, and so one of each such object, runs per process.
    Scrapes run in the endpoint's threads: read only what is safe to read from another thread
    (lengths, counters, a database query), never state a reading would change.
    """

    def __init__(
        self, read: Callable[[T | None], list[Metric]], registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._read = read
        self._subject: T | None = None
        registry.register(self)

    def attach(self, subject: T) -> None:
        self._subject = subject

    def describe(self) -> list[Metric]:
        return self._read(None)

    def collect(self) -> list[Metric]:
        subject = self._subject
        if subject is None:
            return self._read(None)
        try:
            return self._read(subject)
        except Exception:
            # One failed reading must not cost the scrape every other metric.
            log.exception("a metrics probe failed")
            return self._read(None)


# gRPC server metrics ------------------------------------------------------------------------


def rpc_name(full_method: str) -> str:
    """The method label: "/emeterai.v1.QuotaService/Batch" is "QuotaService/Batch"."""
    service, _, method = full_method.rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}"


class _MethodMetrics:
    """One method's label children, resolved once per status code rather than on every call."""

    __slots__ = ("_by_code", "_labels")

    def __init__(self, service: str, method: str) -> None:
        self._labels = (service, method)
        self._by_code: dict[grpc.StatusCode, tuple[Any, Any]] = {}
        self._children(grpc.StatusCode.OK)

    def _children(self, code: grpc.StatusCode) -> tuple[Any, Any]:
        children = (
            GRPC_REQUESTS.labels(*self._labels, code.name),
            GRPC_SECONDS.labels(*self._labels, code.name),
        )
        self._by_code[code] = children
        return children

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        count, latency = self._by_code.get(code) or self._children(code)
        count.inc()
        latency.observe(seconds)


def _final_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if exc is None:
        return grpc.StatusCode.OK
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # The caller went away (or its deadline passed) before an answer.
        return grpc.StatusCode.CANCELLED
    # What grpc answers for an exception nobody mapped.
    return grpc.StatusCode.UNKNOWN


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts and times every call by method and final status code. Install it outermost, so the
    code is the one the caller gets, after errors are mapped and refusals made."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._methods: dict[str, _MethodMetrics] = {}

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        metrics = self._methods.get(details.method)
        if metrics is None:
            # Only methods a handler exists for get here, so the method label stays bounded.
            metrics = self._methods[details.method] = _MethodMetrics(self._service, rpc_name(details.method))
        return _measured(handler, metrics)


def _measured(handler: grpc.RpcMethodHandler, metrics: _MethodMetrics) -> Any:
    def unary_response(behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await behaviour(request, context)
            except BaseException as exc:
                metrics.observe(_final_code(context, exc), time.perf_counter() - started)
                raise
            metrics.observe(_final_code(context, None), time.perf_counter() - started)
            return response

        return call

    def stream_response(behaviour: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[[Any, Any], Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for item in responses(behaviour, request, context):
                    yield item
            except BaseException as exc:
                metrics.observe(_final_code(context, exc), time.perf_counter() - started)
                raise
            metrics.observe(_final_code(context, None), time.perf_counter() - started)

        return call

    return rewrapped(handler, unary_response, stream_response)
