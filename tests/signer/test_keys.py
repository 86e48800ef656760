"""Signing keys from PEM files, PKCS#12 files and a real PKCS#11 token (SoftHSM2)."""

from __future__ import annotations

import datetime as dt
import functools
import pickle
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from services.signer.keys import KeySpec, Pkcs11Identity, Signer, load_identity, load_pkcs12_identity
from services.signer.pki import DevPki, PkiError, SigningIdentity
from tests.conftest import ROOT

from .hsm import PIN, TOKEN, Token, issue_certificate


def assert_signature_verifies(signer: Signer, data: bytes) -> None:
    public_key = signer.certificate.public_key()
    signature = signer.sign(data)
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def write_chain(path: Path, chain: list[x509.Certificate]) -> Path:
    path.write_bytes(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain))
    return path


# --- PEM and PKCS#12 files -------------------------------------------------------------------


def test_a_pem_spec_loads_the_dev_pki_signer(dev_pki: DevPki) -> None:
    signer = load_identity(
        KeySpec("pem", key_path=dev_pki.signer_key_path, chain_path=dev_pki.signer_chain_path)
    )
    assert isinstance(signer, SigningIdentity)
    assert signer.key_algorithm == "RSA-3072"
    assert_signature_verifies(signer, b"document digest")


def test_a_spec_names_the_settings_it_lacks() -> None:
    with pytest.raises(PkiError, match="EMETERAI_SIGNER_KEY_PATH, EMETERAI_SIGNER_CERT_CHAIN_PATH"):
        load_identity(KeySpec("pem"))
    with pytest.raises(PkiError, match=r"EMETERAI_SIGNER_PKCS11_MODULE.*EMETERAI_SIGNER_PKCS11_PIN"):
        load_identity(KeySpec("pkcs11"))
    with pytest.raises(PkiError, match="pem, pkcs12 or pkcs11"):
        load_identity(KeySpec("vault"))  # type: ignore[arg-type]


def test_a_spec_does_not_show_its_secrets() -> None:
    spec = KeySpec("pkcs11", pkcs11_pin="123456", pkcs12_password="hunter2")
    assert "123456" not in repr(spec) and "hunter2" not in repr(spec)


@pytest.mark.parametrize("curve_or_size", ["rsa", "p256"])
def test_pkcs12_round_trip(dev_pki: DevPki, tmp_path: Path, curve_or_size: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        dev_pki.load_identity().private_key  # type: ignore[assignment]
        if curve_or_size == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    chain = issue_certificate(dev_pki, key.public_key(), "PKCS#12 Signer")
    path = tmp_path / "signer.p12"
    # CA certificates in a shuffled order: the loader puts the chain back leaf first.
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"signer", key, chain[0], [chain[2], chain[1]], serialization.BestAvailableEncryption(b"s3cret")
        )
    )

    signer = load_identity(KeySpec("pkcs12", pkcs12_path=path, pkcs12_password="s3cret"))

    assert list(signer.chain) == chain
    assert signer.key_algorithm == ("RSA-3072" if curve_or_size == "rsa" else "ECDSA-P256")
    assert_signature_verifies(signer, b"document digest")
    assert_signature_verifies(pickle.loads(pickle.dumps(signer)), b"in a worker")


def test_pkcs12_takes_missing_ca_certificates_from_a_chain_file(dev_pki: DevPki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    chain = issue_certificate(dev_pki, key.public_key(), "Bare PKCS#12")
    path = tmp_path / "bare.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(None, key, chain[0], None, serialization.NoEncryption())
    )
    spec = KeySpec("pkcs12", pkcs12_path=path, chain_path=write_chain(tmp_path / "cas.pem", chain[1:]))
    assert list(load_identity(spec).chain) == chain


def test_pkcs12_with_the_wrong_password_is_refused(dev_pki: DevPki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    chain = issue_certificate(dev_pki, key.public_key(), "Locked")
    path = tmp_path / "locked.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            None, key, chain[0], None, serialization.BestAvailableEncryption(b"right")
        )
    )
    with pytest.raises(PkiError, match="wrong password"):
        load_pkcs12_identity(path, "wrong")
    with pytest.raises(PkiError, match="cannot read"):
        load_pkcs12_identity(tmp_path / "absent.p12", "right")


# --- PKCS#11 on SoftHSM2 ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def hsm_rsa(softhsm_token: Token) -> Iterator[Pkcs11Identity]:
    with Pkcs11Identity.open(
        softhsm_token.module, TOKEN, "signer-rsa", PIN, softhsm_token.rsa_chain
    ) as identity:
        yield identity


def test_signs_with_an_rsa_key_on_the_token(hsm_rsa: Pkcs11Identity) -> None:
    assert hsm_rsa.key_algorithm == "RSA-3072"
    assert hsm_rsa.certificate.subject.rfc4514_string() == "CN=HSM RSA Signer"
    assert_signature_verifies(hsm_rsa, b"signed attributes")


def test_signs_with_a_p256_key_on_the_token(softhsm_token: Token, tmp_path: Path) -> None:
    spec = softhsm_token.spec("signer-p256", write_chain(tmp_path / "chain.pem", softhsm_token.ec_chain))
    signer = load_identity(spec)
    assert isinstance(signer, Pkcs11Identity)
    try:
        assert signer.key_algorithm == "ECDSA-P256"
        for data in (b"", b"signed attributes", bytes(range(256)) * 100):
            assert_signature_verifies(signer, data)
    finally:
        signer.close()


def test_threads_can_share_one_token_session(hsm_rsa: Pkcs11Identity) -> None:
    messages = [f"document {n}".encode() for n in range(32)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(hsm_rsa.sign, messages))
    public_key = hsm_rsa.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    for message, signature in zip(messages, signatures, strict=True):
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_a_worker_process_logs_in_afresh(softhsm_token: Token, tmp_path: Path) -> None:
    spec = softhsm_token.spec("signer-rsa", write_chain(tmp_path / "chain.pem", softhsm_token.rsa_chain))
    loader = pickle.loads(pickle.dumps(functools.partial(load_identity, spec)))
    with loader() as signer:
        copy = pickle.loads(pickle.dumps(signer))
        try:
            assert copy.chain == signer.chain
            assert_signature_verifies(copy, b"from the copy")
        finally:
            copy.close()
    assert "246810" not in repr(signer)


_WRONG_PIN = """
import sys
from pathlib import Path
from cryptography import x509
from services.signer.keys import Pkcs11Identity
from services.signer.pki import PkiError
chain = x509.load_pem_x509_certificates(Path(sys.argv[1]).read_bytes())
try:
    Pkcs11Identity.open(sys.argv[2], sys.argv[3], "signer-rsa", "000000", chain)
except PkiError as exc:
    print(exc)
"""


def test_a_wrong_pin_is_refused_with_a_clear_reason(softhsm_token: Token, tmp_path: Path) -> None:
    # A login belongs to the whole process and this one is logged in already, so the wrong PIN
    # is tried where it would be in real life: in a process of its own.
    chain_path = write_chain(tmp_path / "chain.pem", softhsm_token.rsa_chain)
    result = subprocess.run(
        [sys.executable, "-c", _WRONG_PIN, str(chain_path), str(softhsm_token.module), TOKEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"the PIN for PKCS#11 token {TOKEN!r} is wrong"


def test_an_unknown_token_or_key_is_refused(softhsm_token: Token) -> None:
    with pytest.raises(PkiError, match="no PKCS#11 token 'nope'"):
        Pkcs11Identity.open(softhsm_token.module, "nope", "signer-rsa", PIN, softhsm_token.rsa_chain)
    with pytest.raises(PkiError, match="no private key labelled 'nope'"):
        Pkcs11Identity.open(softhsm_token.module, TOKEN, "nope", PIN, softhsm_token.rsa_chain)
    with pytest.raises(PkiError, match="cannot load the PKCS#11 module"):
        Pkcs11Identity.open("/nonexistent/libpkcs11.so", TOKEN, "signer-rsa", PIN, softhsm_token.rsa_chain)


def test_a_key_is_checked_against_its_certificate(softhsm_token: Token) -> None:
    # The P-256 key with the RSA key's chain, and an RSA key with a stranger's RSA certificate.
    with pytest.raises(PkiError, match="does not belong"):
        Pkcs11Identity.open(softhsm_token.module, TOKEN, "signer-p256", PIN, softhsm_token.rsa_chain)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    x509_chain = self_signed_chain(stranger)
    with pytest.raises(PkiError, match="does not belong"):
        Pkcs11Identity.open(softhsm_token.module, TOKEN, "signer-rsa", PIN, x509_chain)


def self_signed_chain(key: rsa.RSAPrivateKey) -> list[x509.Certificate]:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Stranger")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return [cert]
