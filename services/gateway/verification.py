"""Verifying a PDF: the signer checks the signatures, the ledger tells each serial's status."""

from __future__ import annotations

import asyncio

from emeterai.v1 import quota_service_pb2, signer_service_pb2, verification_pb2
from services.gateway.upstream import Backends, upstream


async def verify_document(backends: Backends, document: bytes) -> verification_pb2.VerificationReport:
    verified = await upstream(
        backends.signer.Verify(signer_service_pb2.VerifyRequest(document=document), timeout=30)
    )
    report = verified.report
    with_serial = [s for s in report.signatures if s.serial]
    lookups = await asyncio.gather(
        *(
            upstream(
                backends.quota.LookupSerial(quota_service_pb2.LookupSerialRequest(serial=s.serial), timeout=5)
            )
            for s in with_serial
        )
    )
    for signature, found in zip(with_serial, lookups, strict=True):
        signature.serial_status = found.serial.status
    return report
