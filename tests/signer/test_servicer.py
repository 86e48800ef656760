"""SignerService over a real grpc.aio server on a loopback port, called through the generated stub."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emeterai.v1 import common_pb2, signer_service_pb2, signer_service_pb2_grpc
from services.common.errors import status_code_for
from services.common.interceptors import ErrorInterceptor
from services.signer.errors import DocumentLocked, EncryptedPdf
from services.signer.pki import SigningIdentity
from services.signer.servicer import SIGNER_STATUS_CODES, SignerServicer
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL

if TYPE_CHECKING:
    # Exists only in the .pyi: the typed face of SignerServiceStub over an aio channel.
    from emeterai.v1.signer_service_pb2_grpc import SignerServiceAsyncStub as Stub

# Under gRPC's default 4 MiB message limit, so the servicer's own check is what answers.
MAX_DOCUMENT_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def threads() -> Iterator[Executor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@asynccontextmanager
async def serving(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], executor: Executor
) -> AsyncIterator[Stub]:
    servicer = SignerServicer(
        identity,
        trust_roots,
        public_url=PUBLIC_URL,
        executor=executor,
        location="Jakarta",
        max_document_bytes=MAX_DOCUMENT_BYTES,
    )
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
    identity: SigningIdentity, trust_roots: list[x509.Certificate], threads: Executor
) -> None:
    document = corpus_pdf()
    async with serving(identity, trust_roots, threads) as stub:
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
    assert signature.chain_trusted
    assert signature.sub_filter == "ETSI.CAdES.detached"
    assert signature.HasField("signed_at") and signature.signed_at.seconds > 0
    assert list(signature.problems) == []


async def test_puts_the_stamp_where_asked(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], threads: Executor
) -> None:
    placement = common_pb2.StampPlacement(page=2, rect=common_pb2.Rect(llx=50, lly=60, urx=170, ury=180))
    async with serving(identity, trust_roots, threads) as stub:
        stamped = await stub.Stamp(
            signer_service_pb2.StampRequest(document=corpus_pdf(), serial=SERIAL, placement=placement)
        )
    assert stamped.placement == placement


async def test_tells_the_signer_chain(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], threads: Executor
) -> None:
    async with serving(identity, trust_roots, threads) as stub:
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
    identity: SigningIdentity,
    trust_roots: list[x509.Certificate],
    threads: Executor,
) -> None:
    request = signer_service_pb2.StampRequest(**{"document": corpus_pdf(), **request_fields})
    async with serving(identity, trust_roots, threads) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Stamp(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


async def test_an_encrypted_pdf_is_invalid_argument_for_both_calls(
    identity: SigningIdentity, trust_roots: list[x509.Certificate], threads: Executor
) -> None:
    encrypted = corpus_pdf("sf-005-encrypted-password.pdf")
    async with serving(identity, trust_roots, threads) as stub:
        for call in (
            stub.Stamp(signer_service_pb2.StampRequest(document=encrypted, serial=SERIAL)),
            stub.Verify(signer_service_pb2.VerifyRequest(document=encrypted)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "password-protected" in (raised.value.details() or "")


def test_the_status_table_covers_the_signer_errors() -> None:
    codes = SIGNER_STATUS_CODES
    assert status_code_for(DocumentLocked("locked"), codes) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code_for(EncryptedPdf("encrypted"), codes) == grpc.StatusCode.INVALID_ARGUMENT


async def test_works_with_a_process_pool(
    identity: SigningIdentity, trust_roots: list[x509.Certificate]
) -> None:
    # What production wiring uses to spread signing over cores: everything crossing into the
    # workers must pickle, the identity included.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as processes:
        async with serving(identity, trust_roots, processes) as stub:
            stamped = await stub.Stamp(signer_service_pb2.StampRequest(document=corpus_pdf(), serial=SERIAL))
            verified = await stub.Verify(signer_service_pb2.VerifyRequest(document=stamped.stamped_document))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Stamp(signer_service_pb2.StampRequest(document=b"junk", serial=SERIAL))
    assert verified.report.signatures[0].signature_valid
    assert verified.report.signatures[0].chain_trusted
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
