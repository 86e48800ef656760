"""The development PKI and loading a signing identity."""

from __future__ import annotations

import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.signer.pki import DevPki, PkiError, SigningIdentity, ensure_dev_pki, load_signing_identity
from tests.conftest import ROOT


def test_makes_a_three_level_chain_with_the_expected_extensions(dev_pki: DevPki) -> None:
    identity = dev_pki.load_identity()
    leaf, issuing, root = identity.chain
    assert [cert.subject.rfc4514_string().split(",")[0] for cert in identity.chain] == [
        "CN=e-meterai Dev Signer",
        "CN=e-meterai Dev Issuing CA",
        "CN=e-meterai Dev Root CA",
    ]
    assert dev_pki.load_trust_roots() == [root]
    assert dev_pki.issuing_ca_path.read_bytes().count(b"BEGIN CERTIFICATE") == 1
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)

    assert isinstance(identity.private_key, rsa.RSAPrivateKey)
    assert identity.key_algorithm == "RSA-3072"

    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    for child, parent in ((leaf, issuing), (issuing, root)):
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
    for ca in (issuing, root):
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_keeps_the_private_keys_private(dev_pki: DevPki) -> None:
    for path in (dev_pki.signer_key_path, dev_pki.tsa_key_path, dev_pki.issuing_ca_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_makes_a_timestamp_authority_under_the_same_issuing_ca(dev_pki: DevPki) -> None:
    tsa = dev_pki.load_tsa_identity()
    leaf, issuing, root = tsa.chain
    assert leaf.subject.rfc4514_string().startswith("CN=e-meterai Dev Timestamp Authority")
    assert (issuing, root) == dev_pki.load_identity().chain[1:]
    leaf.verify_directly_issued_by(issuing)
    # RFC 3161 2.3: the one purpose, marked critical.
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert tsa.key_algorithm == "ECDSA-P256"


def test_adds_a_timestamp_authority_to_a_pki_made_before_it_existed(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path)
    pki.tsa_key_path.unlink()
    pki.tsa_chain_path.unlink()
    signer_before = pki.signer_chain_path.read_bytes()

    ensure_dev_pki(tmp_path)

    assert pki.signer_chain_path.read_bytes() == signer_before
    leaf, issuing, _ = pki.load_tsa_identity().chain
    assert issuing == pki.load_identity().chain[1]
    leaf.verify_directly_issued_by(issuing)


def test_without_the_issuing_ca_key_the_tsa_gets_its_own_trusted_root(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path)
    for path in (pki.tsa_key_path, pki.tsa_chain_path, pki.issuing_ca_key_path):
        path.unlink()
    signer_before = pki.signer_chain_path.read_bytes()
    (old_root,) = pki.load_trust_roots()

    ensure_dev_pki(tmp_path)

    assert pki.signer_chain_path.read_bytes() == signer_before
    tsa_leaf, tsa_root = pki.load_tsa_identity().chain
    assert pki.load_trust_roots() == [old_root, tsa_root]
    tsa_leaf.verify_directly_issued_by(tsa_root)


def test_leaves_an_existing_pki_alone(tmp_path: Path) -> None:
    first = ensure_dev_pki(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.glob("*.pem")}
    ensure_dev_pki(tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.glob("*.pem")} == before
    assert len(before) == 7
    assert first.signer_chain_path.exists()


def test_replaces_a_half_written_pki(tmp_path: Path) -> None:
    (tmp_path / "signer-key.pem").write_bytes(b"left over from a crash")
    ensure_dev_pki(tmp_path).load_identity()


_RACE = (
    "import sys; from pathlib import Path; from cryptography.hazmat.primitives import hashes;"
    "from services.signer.pki import ensure_dev_pki;"
    "print(ensure_dev_pki(Path(sys.argv[1])).load_identity().certificate.fingerprint(hashes.SHA256()).hex())"
)


def test_processes_racing_to_create_it_agree_on_one_pki(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    fingerprints = {racer.communicate(timeout=120)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    # load_identity checks the key against the leaf, so a mixed key and chain would have failed.
    assert len(fingerprints) == 1


def test_refuses_a_key_that_does_not_match_the_chain(dev_pki: DevPki, tmp_path: Path) -> None:
    other = ensure_dev_pki(tmp_path / "other")
    with pytest.raises(PkiError, match="does not belong"):
        load_signing_identity(other.signer_key_path, dev_pki.signer_chain_path)


def test_refuses_missing_or_unreadable_files(dev_pki: DevPki, tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="signing key"):
        load_signing_identity(tmp_path / "absent.pem", dev_pki.signer_chain_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(PkiError, match="certificates"):
        load_signing_identity(dev_pki.signer_key_path, garbage)


def test_an_identity_survives_pickling_into_a_worker_process(identity: SigningIdentity) -> None:
    copy = pickle.loads(pickle.dumps(identity))
    assert copy.chain == identity.chain
    signature = copy.sign(b"document digest")
    public_key = identity.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, b"document digest", padding.PKCS1v15(), hashes.SHA256())


def test_signs_with_ecdsa_keys(ecdsa_pki: tuple[SigningIdentity, x509.Certificate]) -> None:
    ecdsa_identity, _ = ecdsa_pki
    assert ecdsa_identity.key_algorithm == "ECDSA-P256"
    public_key = ecdsa_identity.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(ecdsa_identity.sign(b"data"), b"data", ec.ECDSA(hashes.SHA256()))
