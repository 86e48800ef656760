"""Wiring of the gateway: HTTP for retail users and gRPC for distributors, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
from collections.abc import Iterator

import uvicorn

from emeterai.v1 import (
    auth_service_pb2_grpc,
    distributor_service_pb2_grpc,
    quota_service_pb2_grpc,
)
from services.auth.client import BatchingAuthStub
from services.common.boot import Registration, run_service, start_grpc_server, wait_for_termination
from services.common.clients import ServiceTokenSource, service_channel
from services.common.errors import BASE_STATUS_CODES
from services.common.interceptors import server_interceptors
from services.common.redis_state import async_redis_client
from services.common.settings import GatewaySettings
from services.common.tokens import RemoteJwks, token_verifier
from services.gateway.callbacks import AuthWebhookSecrets, CallbackClient
from services.gateway.distributor import POLICY, SERVICE_NAME, DistributorServicer
from services.gateway.documents import LocalDocumentStore, retention_from_days
from services.gateway.edge import DISTRIBUTOR_STAMP_RULE, AdmissionControl, GrpcAdmission
from services.gateway.http_api import Gateway, create_app
from services.gateway.job_leases import RedisJobLeases, replica_name
from services.gateway.job_store import LocalJobStore
from services.gateway.jobs import JobLimits, StampJobs
from services.gateway.metrics import ADMISSION
from services.gateway.notices import NoticeBoard
from services.gateway.retention import sweep_periodically
from services.gateway.signer_pool import SignerPool
from services.gateway.slow_clients import bounded_http_protocol
from services.gateway.stamping import StampingFlow
from services.gateway.upstream import Backends
from services.quota.client import BatchingQuotaStub


class _HttpServer(uvicorn.Server):
    # Signals belong to the service as a whole: it drains gRPC and HTTP together.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: GatewaySettings) -> None:
    tokens = ServiceTokenSource(settings.auth_address, "gateway", settings.service_secret.get_secret_value())
    channels = [
        service_channel(settings.auth_address, tokens),
        service_channel(settings.quota_address, tokens),
    ]
    # Least outstanding requests over the signer replicas, with ejection and retry elsewhere.
    signers = SignerPool.for_service(settings.signer_addresses, tokens)
    window_s = settings.stamp_batch_window_ms / 1000
    backends = Backends(
        auth=BatchingAuthStub(auth_service_pb2_grpc.AuthServiceStub(channels[0]), window_s=window_s),
        # Stamps' PIN checks coalesce into VerifyStampingPins calls, the stamping path and payments
        # into QuotaService.Batch calls.
        quota=BatchingQuotaStub(quota_service_pb2_grpc.QuotaServiceStub(channels[1]), window_s=window_s),
        signer=signers,
    )
    retention = retention_from_days(settings.document_retention_days)
    store = LocalDocumentStore(settings.resolved_document_store_dir, retention)
    # Token buckets are shared through Redis when there is one; every replica signs waiting-room
    # tickets with the same key, derived from the secret they share.
    redis = async_redis_client(settings.redis_url) if settings.redis_url else None
    ticket_key = hmac.new(
        settings.service_secret.get_secret_value().encode(), b"waiting-room tickets", hashlib.sha256
    ).digest()
    admission = AdmissionControl.from_settings(settings, redis, ticket_key)
    ADMISSION.attach(admission)
    stamping = StampingFlow(backends, store, settings.sign_timeout_s, admission.gate)
    notices = NoticeBoard(backends.auth, keep=settings.resolved_document_store_dir.parent / "notice.json")
    job_store = LocalJobStore(settings.resolved_job_store_dir, retention)
    callbacks = CallbackClient()
    jobs = StampJobs(
        job_store,
        stamping,
        AuthWebhookSecrets(backends.auth),
        callbacks,
        JobLimits(settings.job_max_documents, settings.job_max_bytes, settings.max_upload_bytes),
        dev=settings.is_dev,
        workers=settings.job_workers,
        pace=functools.partial(admission.token_wait, DISTRIBUTOR_STAMP_RULE),
        # Replicas sharing the job folder share the jobs' leases through Redis.
        leases=RedisJobLeases(redis, replica_name()) if redis is not None else None,
    )
    jwks = RemoteJwks(settings.auth_address)
    verifier = token_verifier(settings, jwks)

    grpc_server = await start_grpc_server(
        settings.gateway_grpc_address,
        [
            Registration(
                distributor_service_pb2_grpc.add_DistributorServiceServicer_to_server,
                DistributorServicer(
                    backends,
                    stamping,
                    store,
                    settings.max_upload_bytes,
                    jobs=jobs,
                    notices=notices,
                    stamp_token=functools.partial(admission.token_for, DISTRIBUTOR_STAMP_RULE),
                ),
                SERVICE_NAME,
            )
        ],
        [*server_interceptors(BASE_STATUS_CODES, verifier, POLICY), GrpcAdmission(admission)],
    )
    host, _, port = settings.gateway_http_address.rpartition(":")
    http = _HttpServer(
        uvicorn.Config(
            create_app(Gateway(settings, backends, verifier, store, stamping, notices, admission)),
            host=host,
            port=int(port),
            log_config=None,
            access_log=settings.http_access_log,
            lifespan="off",
            http=bounded_http_protocol(settings.http_header_timeout_s),
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        )
    )
    http_task = asyncio.create_task(http.serve())
    stop_task = asyncio.create_task(wait_for_termination())
    sweeping = asyncio.create_task(sweep_periodically([store.delete_expired, job_store.delete_expired]))
    try:
        # Jobs a previous run left unfinished go on where they stopped.
        await jobs.start()
        # The HTTP server only returns early when it could not start (e.g. its port is taken).
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if http_task.done() and not stop_task.done():
            raise SystemExit(f"HTTP server could not listen on {settings.gateway_http_address}")
    finally:
        stop_task.cancel()
        sweeping.cancel()

        async def stop_http() -> None:
            await asyncio.sleep(settings.shutdown_notice_s)
            http.should_exit = True
            await http_task

        await asyncio.gather(
            grpc_server.stop(settings.shutdown_grace_s, settings.shutdown_notice_s),
            stop_http(),
            jobs.shutdown(settings.shutdown_grace_s),
        )
        await callbacks.close()
        for channel in channels:
            await channel.close()
        await signers.close()
        await tokens.close()
        await jwks.close()
        if redis is not None:
            await redis.aclose()
        store.close()


def main() -> None:
    run_service("gateway", GatewaySettings, serve)
