"""Wiring of the quota service (the ledger of record) and its sweeper of expired holds and orders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from emeterai.v1 import quota_service_pb2, quota_service_pb2_grpc
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.interceptors import AccessPolicy, server_interceptors
from services.common.settings import QuotaSettings
from services.common.tokens import KIND_SERVICE, RemoteJwks, token_verifier
from services.quota.ledger import Ledger
from services.quota.metrics import HOLDS, OutstandingHolds, reconcile_periodically
from services.quota.servicer import QUOTA_STATUS_CODES, QuotaServicer

log = logging.getLogger(__name__)

SERVICE_NAME = quota_service_pb2.DESCRIPTOR.services_by_name["QuotaService"].full_name
POLICY = AccessPolicy(default_kinds=frozenset({KIND_SERVICE}))
SWEEP_INTERVAL_S = 5.0
CALL_THREADS = 64


async def sweep(ledger: Ledger, interval_s: float = SWEEP_INTERVAL_S) -> None:
    """Release holds nobody resolved in time, expire unpaid orders and send back the money of
    refunds the payment provider has not confirmed yet, for as long as we run.

    Every replica may sweep: each release is its own transaction that only moves a hold still
    reserved, so two sweepers never release the same hold twice.
    """
    while True:
        try:
            released = await asyncio.to_thread(ledger.release_expired_holds)
            expired = await asyncio.to_thread(ledger.expire_orders)
            refunded = await asyncio.to_thread(ledger.send_pending_refunds)
            if released or expired or refunded:
                log.info(
                    "swept",
                    extra={"holds_released": released, "orders_expired": expired, "refunds_sent": refunded},
                )
        except Exception:
            log.exception("sweep failed; trying again")
        await asyncio.sleep(interval_s)


async def serve(settings: QuotaSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Calls that still run in a thread (reads, CreateOrder with its provider call) mostly wait on the
    # database or the group committer; asyncio's default of a few threads would cap how many of
    # them share a batch.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="quota-call")
    )
    ledger = Ledger.from_settings(settings)
    jwks = RemoteJwks(settings.auth_address)
    verifier = token_verifier(settings, jwks)
    server = await start_grpc_server(
        settings.quota_address,
        [
            Registration(
                quota_service_pb2_grpc.add_QuotaServiceServicer_to_server, QuotaServicer(ledger), SERVICE_NAME
            )
        ],
        server_interceptors(QUOTA_STATUS_CODES, verifier, POLICY),
    )
    HOLDS.attach(OutstandingHolds(ledger))
    sweeper = asyncio.create_task(sweep(ledger))
    reconciler = asyncio.create_task(reconcile_periodically(ledger))
    await wait_for_termination()
    await server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s)
    for task in (sweeper, reconciler):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.to_thread(ledger.close)
    await jwks.close()


def main() -> None:
    run_service("quota", QuotaSettings, serve)
