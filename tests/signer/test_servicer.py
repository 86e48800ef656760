"""SignerService over a real grpc.aio server on a loopback port, called through the generated stub."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from emeterai.v1 import common_pb2, signer_service_pb2, signer_service_pb2_grpc, verification_pb2
from services.common.interceptors import ErrorInterceptor
from services.signer.errors import DocumentTooComplex
from services.signer.pki import DevPki, SigningIdentity, load_signing_identity
from services.signer.placement import Placement
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from services.signer.workers import StampJob, WorkerConfig, WorkerPool
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL

if TYPE_CHECKING:
    # Exists only in the .pyi: the typed face of SignerServiceStub over an aio channel.
    from emeterai.v1.signer_service_pb2_grpc import SignerServiceAsyncStub as Stub

# Under gRPC's default 4 MiB message limit, so the servicer's own check is what answers.
MAX_DOCUMENT_BYTES = 1024 * 1024


# One event loop for the module, so the worker processes start once for all its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")


def worker_config(dev_pki: DevPki) -> WorkerConfig:
    return WorkerConfig(
        load_identity=functools.partial(
            load_signing_identity, dev_pki.signer_key_path, dev_pki.signer_chain_path
        ),
        trust_roots_der=WorkerConfig.trust_roots_to_der(dev_pki.load_trust_roots()),
        public_url=PUBLIC_URL,
        location="Jakarta",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workers(dev_pki: DevPki) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(worker_config(dev_pki), size=2, time_limit_s=60)
    await pool.start()
    yield pool
    await pool.close()


@asynccontextmanager
async def serving(workers: WorkerPool, identity: SigningIdentity) -> AsyncIterator[Stub]:
    servicer = SignerServicer(workers, identity, max_document_bytes=MAX_DOCUMENT_BYTES)
    server = grpc.aio.server(interceptors=[ErrorInterceptor(SIGNER_STATUS_CODES)])
    signer_service_pb2_grpc.add_SignerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield signer_service_pb2_grpc.SignerServiceStub(channel)  # type: ignore[misc]
    finally:
        await channel.close()
        await server.stop(None)


def corpus_pdf(name: str = "sf-006-pdflatex-outline.pdf") -> bytes:
    return (require_corpus() / name).read_bytes()


async def test_stamps_then_verifies(
    workers: WorkerPool, identity: SigningIdentity
) -> None:
    document = corpus_pdf()
    async with serving(workers, identity) as stub:
        stamped = await stub.Stamp(
            signer_service_pb2.StampRequest(
                document=document,
                serial=SERIAL,
                metadata=common_pb2.DocumentMetadata(name="Surat Lamaran CPNS"),
            )
        )
        assert stamped.stamped_document.startswith(document)
        assert stamped.stamped_sha256 == hashlib.sha256(stamped.stamped_document).digest()
        # No placement asked: the last page, bottom-right.
        assert stamped.placement.page == 4
        assert stamped.placement.rect.urx - stamped.placement.rect.llx == pytest.approx(100)
        assert stamped.placement.rect.llx > 300 and stamped.placement.rect.lly < 100

        verified = await stub.Verify(signer_service_pb2.VerifyRequest(document=stamped.stamped_document))

    report = verified.report
    assert report.document_sha256 == stamped.stamped_sha256
    [signature] = report.signatures
    assert signature.serial == SERIAL
    assert signature.signature_valid and signature.document_intact and signature.covers_whole_document
    assert signature.later_changes == verification_pb2.LATER_CHANGES_NONE
    assert signature.kind == verification_pb2.SIGNATURE_KIND_APPROVAL
    assert signature.chain_trusted
    assert signature.sub_filter == "ETSI.CAdES.detached"
    assert signature.HasField("signed_at") and signature.signed_at.seconds > 0
    assert list(signature.problems) == []


async def test_puts_the_stamp_where_asked(
    workers: WorkerPool, identity: SigningIdentity
) -> None:
    placement = common_pb2.StampPlacement(page=2, rect=common_pb2.Rect(llx=50, lly=60, urx=170, ury=180))
    async with serving(workers, identity) as stub:
        stamped = await stub.Stamp(
            signer_service_pb2.StampRequest(document=corpus_pdf(), serial=SERIAL, placement=placement)
        )
    assert stamped.placement == placement


async def test_tells_the_signer_chain(
    workers: WorkerPool, identity: SigningIdentity
) -> None:
    async with serving(workers, identity) as stub:
        info = await stub.GetSignerInfo(signer_service_pb2.GetSignerInfoRequest())
    assert list(info.certificate_chain) == [
        cert.public_bytes(serialization.Encoding.DER) for cert in identity.chain
    ]
    assert info.key_algorithm == "RSA-3072"


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"document": b"not a pdf at all", "serial": SERIAL}, "not a PDF"),
        ({"document": b"", "serial": SERIAL}, "empty"),
        ({"document": b"%PDF-1.7\n" + b"\0" * 5000, "serial": SERIAL}, "damaged"),
        ({"serial": "TOO-SHORT"}, "22 letters or digits"),
        ({"serial": SERIAL, "placement": common_pb2.StampPlacement(page=9)}, "does not exist"),
        (
            {
                "serial": SERIAL,
                "placement": common_pb2.StampPlacement(
                    page=1, rect=common_pb2.Rect(llx=0, lly=0, urx=9, ury=9)
                ),
            },
            "at least",
        ),
        ({"document": b"%PDF-1.7\n" + b" " * (MAX_DOCUMENT_BYTES + 1), "serial": SERIAL}, "larger than"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    request_fields: dict,
    message: str,
    workers: WorkerPool,
    identity: SigningIdentity,
) -> None:
    request = signer_service_pb2.StampRequest(**{"document": corpus_pdf(), **request_fields})
    async with serving(workers, identity) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Stamp(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


async def test_an_encrypted_pdf_is_invalid_argument_for_both_calls(
    workers: WorkerPool, identity: SigningIdentity
) -> None:
    encrypted = corpus_pdf("sf-005-encrypted-password.pdf")
    async with serving(workers, identity) as stub:
        for call in (
            stub.Stamp(signer_service_pb2.StampRequest(document=encrypted, serial=SERIAL)),
            stub.Verify(signer_service_pb2.VerifyRequest(document=encrypted)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "password-protected" in (raised.value.details() or "")


async def test_a_document_past_the_time_limit_costs_only_its_worker(dev_pki: DevPki) -> None:
    pool = WorkerPool(worker_config(dev_pki), size=1, time_limit_s=2)
    await pool.start()
    try:
        (hung,) = pool.workers
        # A worker that stops making progress, as on a pathological document.
        os.kill(hung.pid, signal.SIGSTOP)
        with pytest.raises(DocumentTooComplex, match="longer than 2 s"):
            await pool.stamp(StampJob(corpus_pdf(), serial=SERIAL, placement=Placement()))
        assert not hung.is_alive()
        (replacement,) = pool.workers
        assert replacement.pid != hung.pid
        result = await pool.stamp(StampJob(corpus_pdf(), serial=SERIAL, placement=Placement()))
        assert result.stamped_document.startswith(corpus_pdf())
    finally:
        await pool.close()


async def test_a_worker_that_died_while_idle_is_replaced_before_it_is_given_work(dev_pki: DevPki) -> None:
    pool = WorkerPool(worker_config(dev_pki), size=1, time_limit_s=60)
    await pool.start()
    try:
        (dead,) = pool.workers
        dead.kill()
        await asyncio.to_thread(dead.join, 10)
        result = await pool.stamp(StampJob(corpus_pdf(), serial=SERIAL, placement=Placement()))
        assert result.stamped_document.startswith(corpus_pdf())
        assert [p.pid for p in pool.workers] != [dead.pid]
    finally:
        await pool.close()


async def test_callers_that_give_up_mid_document_leave_every_worker_in_the_pool(dev_pki: DevPki) -> None:
    pool = WorkerPool(worker_config(dev_pki), size=2, time_limit_s=60)
    await pool.start()
    document = corpus_pdf()
    try:
        # Callers whose deadline passes while their document is on a worker, over and over: more
        # of them than there are workers, so a worker lost each time would leave none. The
        # workers are held still meanwhile, so every document is mid-work when its caller leaves.
        for round_ in range(3):
            for process in pool.workers:
                os.kill(process.pid, signal.SIGSTOP)
            calls = [
                asyncio.ensure_future(
                    pool.stamp(StampJob(document, serial=f"{SERIAL[:-2]}{round_}{n}", placement=Placement()))
                )
                for n in range(3)
            ]
            await asyncio.sleep(0.2)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            for process in pool.workers:
                os.kill(process.pid, signal.SIGCONT)
        # The abandoned documents finish and their workers come back.
        for _ in range(600):
            if pool.idle == 2:
                break
            await asyncio.sleep(0.05)
        assert pool.idle == 2
        assert len(pool.workers) == 2
        results = await asyncio.gather(
            *(pool.stamp(StampJob(document, serial=SERIAL, placement=Placement())) for _ in range(4))
        )
        assert all(r.stamped_document.startswith(document) for r in results)
    finally:
        await pool.close()
