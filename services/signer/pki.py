"""The key and certificates the signer signs with, and the roots a verifier trusts.

In production the key and chain come from files issued by a licensed CA (PSrE). For development
and tests `ensure_dev_pki` makes a small three-level PKI (root -> issuing CA -> signer) so the
whole flow, including chain validation, runs on a laptop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from services.common.files import write_atomically

ROOT_FILE = "root.pem"
ISSUING_CA_FILE = "issuing-ca.pem"
SIGNER_KEY_FILE = "signer-key.pem"
SIGNER_CHAIN_FILE = "signer-chain.pem"

SignerPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class PkiError(Exception):
    """The configured key, chain or trust roots cannot be used; raised at start-up, not per request."""


@dataclass(frozen=True)
class SigningIdentity:
    """A private key and its certificate chain, leaf first."""

    private_key: SignerPrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain:
            raise PkiError("the certificate chain is empty")
        if not isinstance(self.private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise PkiError("only RSA and ECDSA signing keys are supported")
        leaf_key = self.chain[0].public_key()
        if leaf_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise PkiError("the private key does not belong to the first certificate of the chain")

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def key_algorithm(self) -> str:
        """Short name such as "RSA-3072" or "ECDSA-P256", shown to operators and clients."""
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            return f"RSA-{key.key_size}"
        curve_names = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}
        return f"ECDSA-{curve_names.get(key.curve.name, key.curve.name)}"

    def sign(self, data: bytes) -> bytes:
        """Sign `data` with SHA-256: RSA PKCS#1 v1.5, or ECDSA (DER-encoded signature).

        Only this method touches the key, so a hardware or remote signer can replace this class.
        """
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    def __reduce__(self) -> tuple[object, tuple[bytes, tuple[bytes, ...]]]:
        # Key objects do not pickle; a process-pool executor needs the identity in each worker.
        key_der = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain_der = tuple(cert.public_bytes(serialization.Encoding.DER) for cert in self.chain)
        return _identity_from_der, (key_der, chain_der)


def _identity_from_der(key_der: bytes, chain_der: tuple[bytes, ...]) -> SigningIdentity:
    # The key was validated when it was first loaded; repeating the RSA checks in every worker
    # call would cost more than the signature itself.
    key = serialization.load_der_private_key(key_der, password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return SigningIdentity(key, tuple(x509.load_der_x509_certificate(der) for der in chain_der))


@dataclass(frozen=True)
class DevPki:
    """Where `ensure_dev_pki` keeps the development PKI."""

    directory: Path

    @property
    def root_path(self) -> Path:
        return self.directory / ROOT_FILE

    @property
    def issuing_ca_path(self) -> Path:
        return self.directory / ISSUING_CA_FILE

    @property
    def signer_key_path(self) -> Path:
        return self.directory / SIGNER_KEY_FILE

    @property
    def signer_chain_path(self) -> Path:
        return self.directory / SIGNER_CHAIN_FILE

    def load_identity(self) -> SigningIdentity:
        return load_signing_identity(self.signer_key_path, self.signer_chain_path)

    def load_trust_roots(self) -> list[x509.Certificate]:
        return load_trust_roots(self.root_path)


def load_signing_identity(key_path: Path, chain_path: Path) -> SigningIdentity:
    """Read an unencrypted PEM private key and a PEM chain (leaf first)."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"cannot read the signing key {key_path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: only RSA and ECDSA signing keys are supported")
    return SigningIdentity(key, tuple(_read_certificates(chain_path)))


def load_trust_roots(path: Path) -> list[x509.Certificate]:
    """Read a PEM bundle of root certificates."""
    return _read_certificates(path)


def _read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read certificates from {path}: {exc}") from exc
    if not certificates:
        raise PkiError(f"{path} holds no certificate")
    return certificates


def ensure_dev_pki(directory: Path) -> DevPki:
    """Create the development PKI in `directory` unless it is already complete.

    Several processes (one signer per core) may start at once: a lock file serialises them, and
    every file is written to a temporary name and renamed, so nobody reads half a file and a key
    never ends up next to another run's certificate.
    """
    pki = DevPki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        paths = (pki.root_path, pki.issuing_ca_path, pki.signer_key_path, pki.signer_chain_path)
        if all(path.exists() for path in paths):
            return pki
        files = _generate_dev_pki()
        # The chain goes last: its presence marks a complete PKI.
        for name in (ROOT_FILE, ISSUING_CA_FILE, SIGNER_KEY_FILE, SIGNER_CHAIN_FILE):
            write_atomically(directory / name, files[name], mode=0o600 if name == SIGNER_KEY_FILE else 0o644)
    return pki


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "ID"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "e-meterai development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _generate_dev_pki() -> dict[str, bytes]:
    # Back-date a little so a freshly made PKI is valid on a machine whose clock lags.
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    # P-256 for the CAs keeps generation fast; the signer key is RSA-3072 like the production profile.
    root_key = ec.generate_private_key(ec.SECP256R1())
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)

    root_name = _name("e-meterai Dev Root CA")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    issuing_name = _name("e-meterai Dev Issuing CA")
    issuing = (
        x509.CertificateBuilder()
        .subject_name(issuing_name)
        .issuer_name(root_name)
        .public_key(issuing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )

    # No extendedKeyUsage: NSS-based verifiers (poppler's pdfsig) then accept the certificate for
    # document signing without guessing which purpose OID they expect.
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name("e-meterai Dev Signer"))
        .issuer_name(issuing_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False
        )
        .sign(issuing_key, hashes.SHA256())
    )

    return {
        ROOT_FILE: _pem(root),
        ISSUING_CA_FILE: _pem(issuing),
        SIGNER_KEY_FILE: signer_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        SIGNER_CHAIN_FILE: _pem(signer) + _pem(issuing) + _pem(root),
    }


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
