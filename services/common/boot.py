"""Starting and stopping a service the same way everywhere.

SIGTERM (or Ctrl-C) turns health to NOT_SERVING so load balancers stop sending new calls, then
the server drains calls in flight for the grace period and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.clients import CHANNEL_OPTIONS
from services.common.logs import configure_logging
from services.common.metrics import MetricsServer, name_service
from services.common.settings import CommonSettings, SettingsError, load_settings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: the generated add_*_to_server function, the servicer, its full name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object
    name: str


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    names: tuple[str, ...]

    async def stop(self, grace_s: float, notice_s: float = 0.0) -> None:
        """Report NOT_SERVING for notice_s, then stop taking new calls and drain for grace_s."""
        await self.health.enter_graceful_shutdown()
        if notice_s:
            await asyncio.sleep(notice_s)
        await self.server.stop(grace_s)


async def start_grpc_server(
    address: str,
    registrations: Sequence[Registration],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> RunningServer:
    """Serve registrations plus grpc.health.v1 and reflection on address ("host:0" picks a port)."""
    server = grpc.aio.server(interceptors=list(interceptors), options=CHANNEL_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(r.name for r in registrations)
    for registration in registrations:
        registration.add_to_server(registration.servicer, server)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not listen on {address}")
    await server.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("listening", extra={"address": address.rpartition(":")[0] + f":{port}", "services": names})
    return RunningServer(server, health_servicer, port, names)


async def wait_for_termination() -> None:
    """Return on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")


# Set by `emeterai up` (services/stack.py) to its own pid for the services it starts.
STACK_PARENT_VARIABLE = "EMETERAI_STACK_PARENT_PID"


def die_with_stack_parent() -> None:
    """Under `emeterai up`: get SIGTERM when it dies, even by SIGKILL (Linux), so no service of a
    stack that is gone keeps its ports. Asked for here, by the service itself, once it runs."""
    parent = os.environ.get(STACK_PARENT_VARIABLE)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != int(parent):
        # It died before the signal was asked for: nobody would send it now.
        os.kill(os.getpid(), signal.SIGTERM)


def run_service(name: str, settings_cls: type[S], serve: Callable[[S], Awaitable[None]]) -> None:
    """Entry point of `python -m services.<name>`: settings, logs, metrics, serve until a signal,
    exit 0. Metrics are served at settings.metrics_address when it is set."""
    die_with_stack_parent()
    try:
        settings = load_settings(settings_cls)
    except SettingsError as exc:
        print(json.dumps({"level": "ERROR", "service": name, "msg": str(exc)}), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.log_level)
    name_service(name)
    metrics = None
    if settings.metrics_address:
        try:
            metrics = MetricsServer.start(settings.metrics_address)
        except OSError as exc:
            log.error(
                "metrics server could not listen",
                extra={"address": settings.metrics_address, "error": str(exc)},
            )
            raise SystemExit(1) from None
    # What the imports made (about 100 000 objects: modules, classes, protobuf descriptors) lives
    # as long as the process: out of the collector's sight, so a full collection no longer walks
    # it. A young collection every 10 000 new objects rather than 700: a surge keeps thousands
    # of requests alive, and the collector walked them over and over. Measured on the gateway in
    # a `bench/surge.py --quick`: 4% of its CPU in the collector before, under 1% after.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    try:
        asyncio.run(serve(settings))
    finally:
        if metrics is not None:
            metrics.stop()
    log.info("stopped")
    raise SystemExit(0)
