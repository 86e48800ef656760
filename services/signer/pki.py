"""The key and certificates the signer signs with, and the roots a verifier trusts.

In production the key and chain come from files issued by a licensed CA (PSrE). For development
and tests `ensure_dev_pki` makes a small three-level PKI (root -> issuing CA -> signer, and a
timestamp authority beside the signer) so the whole flow, including chain validation and PAdES
B-T timestamps, runs on a laptop.
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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.files import write_atomically

ROOT_FILE = "root.pem"
ISSUING_CA_FILE = "issuing-ca.pem"
SIGNER_KEY_FILE = "signer-key.pem"
SIGNER_CHAIN_FILE = "signer-chain.pem"

# What an end-entity certificate that signs documents or timestamps may do, and nothing more.
_SIGNING_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
# Kept so that later development certificates (the TSA's, added to older directories) chain to
# the same root. Development only: a production CA key never sits next to a service.
ISSUING_CA_KEY_FILE = "issuing-ca-key.pem"
TSA_KEY_FILE = "tsa-key.pem"
TSA_CHAIN_FILE = "tsa-chain.pem"

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
        return key_algorithm_name(self.private_key.public_key())

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


def key_algorithm_name(public_key: object) -> str:
    """The short name (e.g. "RSA-3072", "ECDSA-P256") that `SigningIdentity.key_algorithm` reports."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve_names = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}
        return f"ECDSA-{curve_names.get(public_key.curve.name, public_key.curve.name)}"
    raise PkiError("only RSA and ECDSA signing keys are supported")


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

    @property
    def issuing_ca_key_path(self) -> Path:
        return self.directory / ISSUING_CA_KEY_FILE

    @property
    def tsa_key_path(self) -> Path:
        return self.directory / TSA_KEY_FILE

    @property
    def tsa_chain_path(self) -> Path:
        return self.directory / TSA_CHAIN_FILE

    def load_identity(self) -> SigningIdentity:
        return load_signing_identity(self.signer_key_path, self.signer_chain_path)

    def load_tsa_identity(self) -> SigningIdentity:
        """The development timestamp authority's key and chain (EKU timeStamping, critical)."""
        return load_signing_identity(self.tsa_key_path, self.tsa_chain_path)

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
    never ends up next to another run's certificate. A directory made before the PKI had a
    timestamp authority keeps its signer and gains a TSA certificate.
    """
    pki = DevPki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / ".lock"):
        signer_paths = (pki.root_path, pki.issuing_ca_path, pki.signer_key_path, pki.signer_chain_path)
        if all(path.exists() for path in signer_paths):
            if not (pki.tsa_key_path.exists() and pki.tsa_chain_path.exists()):
                _write_files(directory, _dev_tsa_for_existing_pki(pki))
            return pki
        _write_files(directory, _generate_dev_pki())
    return pki


# Write order: a file later in the list is only ever present when the ones before it are. The
# signer chain marks a complete signer PKI and the TSA chain a complete TSA.
_WRITE_ORDER = (
    ROOT_FILE,
    ISSUING_CA_FILE,
    ISSUING_CA_KEY_FILE,
    SIGNER_KEY_FILE,
    SIGNER_CHAIN_FILE,
    TSA_KEY_FILE,
    TSA_CHAIN_FILE,
)
_PRIVATE_FILES = frozenset({ISSUING_CA_KEY_FILE, SIGNER_KEY_FILE, TSA_KEY_FILE})


def _write_files(directory: Path, files: dict[str, bytes]) -> None:
    for name in _WRITE_ORDER:
        if name in files:
            write_atomically(directory / name, files[name], mode=0o600 if name in _PRIVATE_FILES else 0o644)


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
    root = _self_signed_ca(root_name, root_key, now, path_length=1)

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
        .add_extension(_SIGNING_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False
        )
        .sign(issuing_key, hashes.SHA256())
    )

    tsa_key, tsa = _issue_dev_tsa(issuing, issuing_key, now)
    return {
        ROOT_FILE: _pem(root),
        ISSUING_CA_FILE: _pem(issuing),
        ISSUING_CA_KEY_FILE: _private_pem(issuing_key),
        SIGNER_KEY_FILE: _private_pem(signer_key),
        SIGNER_CHAIN_FILE: _pem(signer) + _pem(issuing) + _pem(root),
        TSA_KEY_FILE: _private_pem(tsa_key),
        TSA_CHAIN_FILE: _pem(tsa) + _pem(issuing) + _pem(root),
    }


def _dev_tsa_for_existing_pki(pki: DevPki) -> dict[str, bytes]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    issuing = _read_certificates(pki.issuing_ca_path)[0]
    roots = _read_certificates(pki.root_path)
    if pki.issuing_ca_key_path.exists():
        issuing_key = serialization.load_pem_private_key(pki.issuing_ca_key_path.read_bytes(), password=None)
        assert isinstance(issuing_key, ec.EllipticCurvePrivateKey)
        tsa_key, tsa = _issue_dev_tsa(issuing, issuing_key, now)
        return {
            TSA_KEY_FILE: _private_pem(tsa_key),
            TSA_CHAIN_FILE: _pem(tsa) + _pem(issuing) + _pem(roots[0]),
        }
    # Directories made before the CA key was kept: the TSA gets a root of its own, added to the
    # trusted roots, so the existing signer key and everything it stamped stay as they are.
    tsa_root_key = ec.generate_private_key(ec.SECP256R1())
    tsa_root = _self_signed_ca(_name("e-meterai Dev TSA Root CA"), tsa_root_key, now, path_length=0)
    tsa_key, tsa = _issue_dev_tsa(tsa_root, tsa_root_key, now)
    return {
        ROOT_FILE: b"".join(_pem(root) for root in roots) + _pem(tsa_root),
        TSA_KEY_FILE: _private_pem(tsa_key),
        TSA_CHAIN_FILE: _pem(tsa) + _pem(tsa_root),
    }


def _self_signed_ca(
    name: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    path_length: int | None,
    days: int = 3650,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_dev_tsa(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A timestamp authority certificate as RFC 3161 wants it: one purpose, marked critical."""
    # P-256 keeps generating the PKI fast and a timestamp token small.
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name("e-meterai Dev Timestamp Authority"))
        .issuer_name(issuer.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SIGNING_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return tsa_key, tsa


def _private_pem(key: SignerPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


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


def ephemeral_p256_identity(name: str, days: int = 30) -> tuple[SigningIdentity, x509.Certificate]:
    """A throwaway P-256 signer under its own root, made in memory (benchmarks, tests); and the root."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{name} Root")
    root = _self_signed_ca(root_name, root_key, now, path_length=None, days=days)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} Signer"))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return SigningIdentity(leaf_key, (leaf, root)), root
