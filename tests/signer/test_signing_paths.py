"""The signing set-ups a deployment chooses, through the worker pool the signer runs:
PAdES B-T with our own timestamp authority, and a key held in a real PKCS#11 token (SoftHSM2)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from services.common.settings import SignerSettings
from services.signer.keys import KeySpec, load_identity
from services.signer.pki import DevPki, load_signing_identity
from services.signer.placement import Placement
from services.signer.server import key_spec, local_timestamper, timestamper_factory, worker_config
from services.signer.tsa_client import HttpTimestampClient
from services.signer.verification import verify_document
from services.signer.workers import StampJob, WorkerConfig, WorkerPool
from tests.conftest import require_corpus

from .conftest import PUBLIC_URL, SERIAL, pdfsig
from .hsm import Token

SAME_LOOP = pytest.mark.asyncio(loop_scope="module")


def _document() -> bytes:
    return (require_corpus() / "sf-002-libreoffice-writer.pdf").read_bytes()


async def _pyhanko_status(path: Path, dev_pki: DevPki) -> PdfSignatureStatus:
    roots = [load_cert_from_pemder(str(dev_pki.root_path))]
    with path.open("rb") as handle:
        signature = PdfFileReader(handle, strict=False).embedded_signatures[-1]
        return await async_validate_pdf_signature(
            signature, ValidationContext(trust_roots=roots, allow_fetching=False)
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def timestamping_workers(dev_pki: DevPki) -> AsyncIterator[WorkerPool]:
    config = WorkerConfig(
        load_identity=functools.partial(
            load_signing_identity, dev_pki.signer_key_path, dev_pki.signer_chain_path
        ),
        trust_roots_der=WorkerConfig.trust_roots_to_der(dev_pki.load_trust_roots()),
        public_url=PUBLIC_URL,
        location="Jakarta",
        make_timestamper=functools.partial(local_timestamper, dev_pki.tsa_key_path, dev_pki.tsa_chain_path),
    )
    pool = WorkerPool(config, size=1, time_limit_s=60)
    await pool.start()
    yield pool
    await pool.close()


@SAME_LOOP
async def test_pades_b_t_with_our_own_timestamp_authority(
    timestamping_workers: WorkerPool, dev_pki: DevPki, trust_roots: list[x509.Certificate], tmp_path: Path
) -> None:
    original = _document()
    result = await timestamping_workers.stamp(StampJob(original, serial=SERIAL, placement=Placement()))
    assert result.stamped_document.startswith(original)
    path = tmp_path / "b-t.pdf"
    path.write_bytes(result.stamped_document)

    [ours] = pdfsig(path)
    assert ours.valid and ours.total_document

    status = await _pyhanko_status(path, dev_pki)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None, "pyHanko found no signature timestamp"
    assert status.timestamp_validity.intact and status.timestamp_validity.valid
    assert status.timestamp_validity.trusted

    report = verify_document(result.stamped_document, trust_roots).signatures[-1]
    assert report.has_timestamp and report.timestamp_valid
    assert report.timestamp_time is not None
    assert report.timestamp_authority


@SAME_LOOP
async def test_a_key_in_a_pkcs11_token_stamps_through_the_workers(
    softhsm_token: Token, dev_pki: DevPki, tmp_path: Path
) -> None:
    chain_path = tmp_path / "hsm-chain.pem"
    chain_path.write_bytes(b"".join(cert.public_bytes(Encoding.PEM) for cert in softhsm_token.rsa_chain))
    spec = softhsm_token.spec("signer-rsa", chain_path)
    config = WorkerConfig(
        load_identity=functools.partial(load_identity, spec),
        trust_roots_der=WorkerConfig.trust_roots_to_der(dev_pki.load_trust_roots()),
        public_url=PUBLIC_URL,
        location="Jakarta",
    )
    # The worker processes open their own PKCS#11 sessions on the token the fixture made.
    pool = WorkerPool(config, size=1, time_limit_s=60)
    await pool.start()
    try:
        original = _document()
        result = await pool.stamp(StampJob(original, serial=SERIAL, placement=Placement()))
    finally:
        await pool.close()
    path = tmp_path / "hsm.pdf"
    path.write_bytes(result.stamped_document)
    [ours] = pdfsig(path)
    assert ours.valid and ours.total_document
    status = await _pyhanko_status(path, dev_pki)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert "HSM RSA Signer" in status.signing_cert.subject.human_friendly


def test_settings_choose_the_key_and_the_timestamps(dev_pki: DevPki, tmp_path: Path) -> None:
    dev = SignerSettings(data_dir=tmp_path, signer_timestamp="local")
    config = worker_config(dev)
    assert config.make_timestamper is not None
    assert config.load_identity().key_algorithm == "RSA-3072"

    remote = SignerSettings(
        data_dir=tmp_path, signer_timestamp="url", signer_tsa_url="http://127.0.0.1:9/tsa"
    )
    factory = timestamper_factory(remote)
    assert isinstance(factory, functools.partial) and factory.func is HttpTimestampClient

    assert timestamper_factory(SignerSettings(data_dir=tmp_path, signer_timestamp="none")) is None

    pkcs11 = SignerSettings(
        data_dir=tmp_path,
        signer_key_kind="pkcs11",
        signer_pkcs11_module=Path("/usr/lib/softhsm/libsofthsm2.so"),
        signer_pkcs11_token="t",
        signer_pkcs11_key_label="k",
        signer_pkcs11_pin="1234",
        signer_cert_chain_path=dev_pki.signer_chain_path,
        signer_timestamp="none",
    )
    spec: KeySpec = key_spec(pkcs11)
    assert (spec.kind, spec.pkcs11_token, spec.pkcs11_key_label, spec.pkcs11_pin) == (
        "pkcs11",
        "t",
        "k",
        "1234",
    )
