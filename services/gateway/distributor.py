"""The public gRPC API for distributor systems."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

from emeterai.v1 import auth_service_pb2, common_pb2, distributor_service_pb2_grpc, quota_service_pb2
from emeterai.v1 import distributor_service_pb2 as pb
from services.common.errors import (
    BASE_STATUS_CODES,
    DomainError,
    NotFound,
    retry_after_of,
    status_code_for,
)
from services.common.interceptors import AccessPolicy, current_principal
from services.common.protos import to_timestamp
from services.common.tokens import KIND_DISTRIBUTOR
from services.gateway.callbacks import AuthWebhookSecrets
from services.gateway.jobs import CallbackState, JobDocument, JobStatus, StampJob, StampJobs
from services.gateway.notices import NoticeBoard
from services.gateway.records import stamp_record
from services.gateway.stamping import StampingFlow, check_document
from services.gateway.upstream import Backends, idempotent, upstream
from services.gateway.verification import verify_document

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DistributorService"].full_name

POLICY = AccessPolicy(
    default_kinds=frozenset({KIND_DISTRIBUTOR}),
    public_methods=frozenset({f"/{SERVICE_NAME}/IssueToken"}),
)

# Documents of one batch stream stamped at the same time; the signer pool does the real work.
BATCH_CONCURRENCY = 4

_JOB_STATUS = {
    JobStatus.QUEUED: pb.STAMP_JOB_STATUS_QUEUED,
    JobStatus.RUNNING: pb.STAMP_JOB_STATUS_RUNNING,
    JobStatus.DONE: pb.STAMP_JOB_STATUS_DONE,
}
_CALLBACK_STATE = {
    CallbackState.NONE: pb.CALLBACK_STATE_NONE,
    CallbackState.PENDING: pb.CALLBACK_STATE_PENDING,
    CallbackState.DELIVERED: pb.CALLBACK_STATE_DELIVERED,
    CallbackState.FAILED: pb.CALLBACK_STATE_FAILED,
}


def stamp_job_message(job: StampJob) -> pb.GetStampJobResponse:
    results = [
        pb.BatchStampResponse(
            client_ref=item.client_ref,
            code=grpc.StatusCode[item.result.code].value[0],
            message=item.result.message,
            stamp=item.result.stamp,
        )
        for item in job.items
        if item.result is not None
    ]
    delivery = job.callback
    return pb.GetStampJobResponse(
        job_id=job.job_id,
        status=_JOB_STATUS[job.status],
        results=results,
        total_documents=len(job.items),
        callback=pb.CallbackDelivery(
            state=_CALLBACK_STATE[delivery.state],
            attempts=delivery.attempts,
            last_http_status=delivery.last_http_status,
            last_error=delivery.last_error,
            delivered_at=to_timestamp(delivery.delivered_at),
        ),
        created_at=to_timestamp(job.created_at),
        finished_at=to_timestamp(job.finished_at),
    )


class DistributorServicer(distributor_service_pb2_grpc.DistributorServiceServicer):
    def __init__(
        self,
        backends: Backends,
        stamping: StampingFlow,
        store: Any,
        max_document_bytes: int,
        *,
        jobs: StampJobs,
        notices: NoticeBoard,
        stamp_token: Callable[[str], AbstractAsyncContextManager[None]],
    ) -> None:
        """stamp_token(account_id) takes a token from the account's stamp bucket for what runs
        inside (once per document of a BatchStamp stream), or raises Exhausted; it gives the
        token back to a document refused for capacity (AdmissionControl.token_for)."""
        self._auth = backends.auth
        self._quota = backends.quota
        self._backends = backends
        self._stamping = stamping
        self._store = store
        self._max_bytes = max_document_bytes
        self._jobs = jobs
        self._notices = notices
        self._stamp_token = stamp_token
        self._webhook_secrets = AuthWebhookSecrets(backends.auth)

    async def _acting_account(self, account_id: str) -> str:
        """The distributor's own account, or one of its customers; anyone else's is NOT_FOUND."""
        own = current_principal().account_id
        if not account_id or account_id == own:
            return own
        found = await upstream(
            self._auth.GetAccount(auth_service_pb2.GetAccountRequest(account_id=account_id))
        )
        if found.account.parent_account_id != own:
            raise NotFound("no such customer")
        return account_id

    async def IssueToken(self, request: pb.IssueTokenRequest, context: Any) -> pb.IssueTokenResponse:
        issued = await upstream(
            self._auth.IssueClientToken(
                auth_service_pb2.IssueClientTokenRequest(
                    client_id=request.client_id, client_secret=request.client_secret
                ),
                timeout=10,
            )
        )
        return pb.IssueTokenResponse(
            access_token=issued.access_token,
            token_type=issued.token_type or "Bearer",
            expires_in_seconds=issued.expires_in_seconds,
        )

    async def CreateOrder(self, request: Any, context: Any) -> pb.DistributorServiceCreateOrderResponse:
        created = await idempotent(
            self._quota.CreateOrder(
                quota_service_pb2.CreateOrderRequest(
                    account_id=current_principal().account_id,
                    quantity=request.quantity,
                    idempotency_key=request.idempotency_key,
                    channel=common_pb2.CHANNEL_DISTRIBUTOR,
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceCreateOrderResponse(order=created.order)

    async def GetOrder(self, request: Any, context: Any) -> pb.DistributorServiceGetOrderResponse:
        found = await upstream(
            self._quota.GetOrder(
                quota_service_pb2.GetOrderRequest(
                    order_id=request.order_id, account_id=current_principal().account_id
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceGetOrderResponse(order=found.order)

    async def ListOrders(self, request: Any, context: Any) -> pb.DistributorServiceListOrdersResponse:
        listed = await upstream(
            self._quota.ListOrders(
                quota_service_pb2.ListOrdersRequest(
                    account_id=current_principal().account_id,
                    page_size=request.page_size,
                    page_token=request.page_token,
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceListOrdersResponse(
            orders=listed.orders, next_page_token=listed.next_page_token
        )

    async def CancelOrder(self, request: Any, context: Any) -> pb.DistributorServiceCancelOrderResponse:
        cancelled = await upstream(
            self._quota.CancelOrder(
                quota_service_pb2.CancelOrderRequest(
                    order_id=request.order_id, account_id=current_principal().account_id
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceCancelOrderResponse(order=cancelled.order)

    async def RefundOrder(self, request: Any, context: Any) -> pb.DistributorServiceRefundOrderResponse:
        refunded = await idempotent(
            self._quota.RefundOrder(
                quota_service_pb2.RefundOrderRequest(
                    order_id=request.order_id,
                    account_id=current_principal().account_id,
                    quantity=request.quantity,
                    reason=request.reason,
                    idempotency_key=request.idempotency_key,
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceRefundOrderResponse(refund=refunded.refund, order=refunded.order)

    async def GetBalance(self, request: Any, context: Any) -> pb.DistributorServiceGetBalanceResponse:
        account_id = await self._acting_account(request.account_id)
        found = await upstream(
            self._quota.GetBalance(quota_service_pb2.GetBalanceRequest(account_id=account_id), timeout=10)
        )
        return pb.DistributorServiceGetBalanceResponse(balance=found.balance)

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: Any
    ) -> pb.CreateCustomerResponse:
        created = await upstream(
            self._auth.CreateSubAccount(
                auth_service_pb2.CreateSubAccountRequest(
                    parent_account_id=current_principal().account_id,
                    display_name=request.display_name,
                    external_ref=request.external_ref,
                ),
                timeout=10,
            )
        )
        return pb.CreateCustomerResponse(account=created.account)

    async def ListCustomers(self, request: pb.ListCustomersRequest, context: Any) -> pb.ListCustomersResponse:
        listed = await upstream(
            self._auth.ListSubAccounts(
                auth_service_pb2.ListSubAccountsRequest(
                    parent_account_id=current_principal().account_id,
                    page_size=request.page_size,
                    page_token=request.page_token,
                ),
                timeout=10,
            )
        )
        return pb.ListCustomersResponse(accounts=listed.accounts, next_page_token=listed.next_page_token)

    async def TransferQuota(self, request: Any, context: Any) -> pb.DistributorServiceTransferQuotaResponse:
        own = current_principal().account_id
        to_account = await self._acting_account(request.to_account_id)
        moved = await idempotent(
            self._quota.TransferQuota(
                quota_service_pb2.TransferQuotaRequest(
                    from_account_id=own,
                    to_account_id=to_account,
                    quantity=request.quantity,
                    idempotency_key=request.idempotency_key,
                    channel=common_pb2.CHANNEL_DISTRIBUTOR,
                ),
                timeout=10,
            )
        )
        return pb.DistributorServiceTransferQuotaResponse(transfer=moved.transfer)

    async def _stamp(self, request: pb.StampDocumentRequest, context: Any) -> pb.StampDocumentResponse:
        check_document(request.document, self._max_bytes)
        outcome = await self._stamping.stamp(
            account_id=await self._acting_account(request.account_id),
            idempotency_key=request.idempotency_key,
            document=request.document,
            placement=request.placement,
            metadata=request.metadata,
            channel=common_pb2.CHANNEL_DISTRIBUTOR,
            document_password=request.document_password,
            # The caller's deadline goes on to the ledger and the signer (None: it set none).
            time_left_s=context.time_remaining(),
        )
        return pb.StampDocumentResponse(
            stamp=stamp_record(outcome.hold), stamped_document=outcome.stamped_document
        )

    async def StampDocument(self, request: pb.StampDocumentRequest, context: Any) -> pb.StampDocumentResponse:
        return await self._stamp(request, context)

    async def BatchStamp(
        self, request_iterator: AsyncIterator[pb.BatchStampRequest], context: Any
    ) -> AsyncIterator[pb.BatchStampResponse]:
        """Stamp each document as it arrives, at most BATCH_CONCURRENCY at once; one result each."""
        results: asyncio.Queue[pb.BatchStampResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)
        distributor = current_principal().account_id

        async def one(item: pb.BatchStampRequest) -> None:
            try:
                # Per document, as for StampDocument: a stream is no way around the account's rate.
                async with self._stamp_token(distributor):
                    stamped = await self._stamp(item.document, context)
                await results.put(
                    pb.BatchStampResponse(
                        client_ref=item.client_ref,
                        code=grpc.StatusCode.OK.value[0],
                        stamp=stamped.stamp,
                        stamped_document=stamped.stamped_document,
                    )
                )
            except DomainError as exc:
                code = status_code_for(exc, BASE_STATUS_CODES)
                refused = pb.BatchStampResponse(
                    client_ref=item.client_ref, code=code.value[0], message=exc.message
                )
                # Over the rate, over capacity, or the same key still in flight: when to send it again.
                wait = retry_after_of(exc)
                if wait:
                    refused.retry_after.FromSeconds(wait)
                await results.put(refused)
            except Exception:
                log.exception("batch item failed", extra={"client_ref": item.client_ref})
                await results.put(
                    pb.BatchStampResponse(
                        client_ref=item.client_ref,
                        code=grpc.StatusCode.INTERNAL.value[0],
                        message="internal error",
                    )
                )
            finally:
                slots.release()

        async def feed() -> None:
            tasks = []
            async for item in request_iterator:
                await slots.acquire()
                tasks.append(asyncio.create_task(one(item)))
            await asyncio.gather(*tasks)
            await results.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (result := await results.get()) is not None:
                yield result
            await feeder
        finally:
            feeder.cancel()

    async def SubmitStampJob(
        self, request: pb.SubmitStampJobRequest, context: Any
    ) -> pb.SubmitStampJobResponse:
        # Customers are checked once, now: the job stamps for the accounts it was accepted for.
        for account_id in {item.document.account_id for item in request.documents}:
            await self._acting_account(account_id)
        documents = [
            JobDocument(
                client_ref=item.client_ref,
                document=item.document.document,
                placement=item.document.placement,
                metadata=item.document.metadata,
                account_id=item.document.account_id,
                document_password=item.document.document_password,
            )
            for item in request.documents
        ]
        job = await self._jobs.submit(
            current_principal().account_id, request.idempotency_key, documents, request.callback_url
        )
        return pb.SubmitStampJobResponse(job_id=job.job_id)

    async def GetStampJob(self, request: pb.GetStampJobRequest, context: Any) -> pb.GetStampJobResponse:
        return stamp_job_message(await self._jobs.get(current_principal().account_id, request.job_id))

    async def RotateWebhookSecret(
        self, request: pb.DistributorServiceRotateWebhookSecretRequest, context: Any
    ) -> pb.DistributorServiceRotateWebhookSecretResponse:
        secret = await self._webhook_secrets.rotate(current_principal().account_id)
        return pb.DistributorServiceRotateWebhookSecretResponse(webhook_secret=secret)

    async def GetNotice(
        self, request: pb.DistributorServiceGetNoticeRequest, context: Any
    ) -> pb.DistributorServiceGetNoticeResponse:
        notice = await self._notices.current()
        if notice is None:
            return pb.DistributorServiceGetNoticeResponse()
        return pb.DistributorServiceGetNoticeResponse(
            notice=pb.OperatorNotice(
                text_id=notice.text_id, text_en=notice.text_en, published_at=notice.published_at
            )
        )

    async def _own_hold(self, stamp_id: str) -> Any:
        # Stamps of the distributor's customers are reachable too.
        found = await upstream(
            self._quota.GetHold(quota_service_pb2.GetHoldRequest(hold_id=stamp_id), timeout=10)
        )
        await self._acting_account(found.hold.account_id)
        return found.hold

    async def GetStamp(self, request: pb.GetStampRequest, context: Any) -> pb.GetStampResponse:
        return pb.GetStampResponse(stamp=stamp_record(await self._own_hold(request.stamp_id)))

    async def ListStamps(self, request: pb.ListStampsRequest, context: Any) -> pb.ListStampsResponse:
        account_id = await self._acting_account(request.account_id)
        listed = await upstream(
            self._quota.ListHolds(
                quota_service_pb2.ListHoldsRequest(
                    account_id=account_id, page_size=request.page_size, page_token=request.page_token
                ),
                timeout=10,
            )
        )
        return pb.ListStampsResponse(
            stamps=[stamp_record(h) for h in listed.holds], next_page_token=listed.next_page_token
        )

    async def DownloadStampedDocument(
        self, request: pb.DownloadStampedDocumentRequest, context: Any
    ) -> pb.DownloadStampedDocumentResponse:
        hold = await self._own_hold(request.stamp_id)
        if not hold.stamped_sha256:
            raise NotFound("this stamp has no stamped document")
        document = await asyncio.to_thread(self._store.get, hold.hold_id, hold.document_ref)
        return pb.DownloadStampedDocumentResponse(stamped_document=document, stamp=stamp_record(hold))

    async def LookupSerial(self, request: Any, context: Any) -> pb.DistributorServiceLookupSerialResponse:
        found = await upstream(
            self._quota.LookupSerial(quota_service_pb2.LookupSerialRequest(serial=request.serial), timeout=5)
        )
        return pb.DistributorServiceLookupSerialResponse(serial=found.serial)

    async def VerifyDocument(
        self, request: pb.VerifyDocumentRequest, context: Any
    ) -> pb.VerifyDocumentResponse:
        check_document(request.document, self._max_bytes)
        return pb.VerifyDocumentResponse(report=await verify_document(self._backends, request.document))
