"""SignerService over gRPC: translates messages to `place_stamp` / `verify_document` and back.

Stamping and verifying are CPU-bound, so they run in the worker processes of a WorkerPool and the
event loop stays free for other calls and health checks. Domain errors are raised as they are;
the error interceptor maps them with SIGNER_STATUS_CODES.
"""

from __future__ import annotations

import grpc
from cryptography.hazmat.primitives import serialization

from emeterai.v1 import common_pb2, signer_service_pb2, signer_service_pb2_grpc, verification_pb2
from services.common.errors import BASE_STATUS_CODES, DomainError
from services.common.protos import to_timestamp
from services.signer.errors import (
    DocumentLocked,
    DocumentTooComplex,
    DocumentTooLarge,
    InvalidPlacement,
    UnsupportedPdf,
)
from services.signer.keys import Signer
from services.signer.placement import Placement
from services.signer.verification import SignatureReport
from services.signer.workers import StampJob, WorkerPool

SIGNER_STATUS_CODES: dict[type[DomainError], grpc.StatusCode] = {
    **BASE_STATUS_CODES,
    # Each already inherits its code; listed so the table reads as the service's whole contract.
    UnsupportedPdf: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidPlacement: grpc.StatusCode.INVALID_ARGUMENT,
    DocumentTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    DocumentTooComplex: grpc.StatusCode.INVALID_ARGUMENT,
    DocumentLocked: grpc.StatusCode.FAILED_PRECONDITION,
}


class SignerServicer(signer_service_pb2_grpc.SignerServiceServicer):
    def __init__(
        self, workers: WorkerPool, identity: Signer, *, max_document_bytes: int | None = None
    ) -> None:
        self._workers = workers
        self._identity = identity
        self._max_document_bytes = max_document_bytes

    async def Stamp(
        self, request: signer_service_pb2.StampRequest, context: grpc.aio.ServicerContext
    ) -> signer_service_pb2.StampResponse:
        self._check_size(request.document)
        # request.document_password is not used yet: encrypted PDFs are refused whatever the
        # password, because the update would have to be encrypted with the document's key.
        result = await self._workers.stamp(
            StampJob(
                request.document,
                serial=request.serial,
                placement=_placement_from_proto(request),
                document_name=request.metadata.name,
            )
        )
        llx, lly, urx, ury = result.rect
        return signer_service_pb2.StampResponse(
            stamped_document=result.stamped_document,
            stamped_sha256=result.stamped_sha256,
            placement=common_pb2.StampPlacement(
                page=result.page, rect=common_pb2.Rect(llx=llx, lly=lly, urx=urx, ury=ury)
            ),
        )

    async def Verify(
        self, request: signer_service_pb2.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> signer_service_pb2.VerifyResponse:
        self._check_size(request.document)
        result = await self._workers.verify(request.document)
        return signer_service_pb2.VerifyResponse(
            report=verification_pb2.VerificationReport(
                signatures=[_report_to_proto(report) for report in result.signatures],
                document_sha256=result.document_sha256,
            )
        )

    async def GetSignerInfo(
        self, request: signer_service_pb2.GetSignerInfoRequest, context: grpc.aio.ServicerContext
    ) -> signer_service_pb2.GetSignerInfoResponse:
        chain = self._identity.chain
        return signer_service_pb2.GetSignerInfoResponse(
            certificate_chain=[cert.public_bytes(serialization.Encoding.DER) for cert in chain],
            key_algorithm=self._identity.key_algorithm,
        )

    def _check_size(self, document: bytes) -> None:
        if self._max_document_bytes is not None and len(document) > self._max_document_bytes:
            limit = self._max_document_bytes / (1024 * 1024)
            raise DocumentTooLarge(f"The document is larger than the {limit:g} MiB this service accepts.")


def _placement_from_proto(request: signer_service_pb2.StampRequest) -> Placement:
    if not request.HasField("placement"):
        return Placement()
    placement = request.placement
    if not placement.HasField("rect"):
        return Placement(page=placement.page)
    rect = placement.rect
    return Placement(page=placement.page, rect=(rect.llx, rect.lly, rect.urx, rect.ury))


_LATER_CHANGES = {
    "none": verification_pb2.LATER_CHANGES_NONE,
    "allowed": verification_pb2.LATER_CHANGES_ALLOWED,
    "modified": verification_pb2.LATER_CHANGES_MODIFIED,
}
_KINDS = {
    "approval": verification_pb2.SIGNATURE_KIND_APPROVAL,
    "certification": verification_pb2.SIGNATURE_KIND_CERTIFICATION,
    "document_timestamp": verification_pb2.SIGNATURE_KIND_DOCUMENT_TIMESTAMP,
}


def _report_to_proto(report: SignatureReport) -> verification_pb2.SignatureReport:
    return verification_pb2.SignatureReport(
        field_name=report.field_name,
        serial=report.serial,
        signature_valid=report.signature_valid,
        document_intact=report.document_intact,
        covers_whole_document=report.covers_whole_document,
        revision=report.revision,
        chain_trusted=report.chain_trusted,
        signer_subject=report.signer_subject,
        sub_filter=report.sub_filter,
        signed_at=to_timestamp(report.signed_at),
        has_timestamp=report.has_timestamp,
        problems=list(report.problems),
        later_changes=_LATER_CHANGES.get(report.later_changes, verification_pb2.LATER_CHANGES_UNSPECIFIED),
        later_revisions=report.later_revisions,
        kind=_KINDS.get(report.kind, verification_pb2.SIGNATURE_KIND_UNSPECIFIED),
        timestamp_valid=report.timestamp_valid,
        timestamp_time=to_timestamp(report.timestamp_time),
        timestamp_authority=report.timestamp_authority,
    )
