"""Signing keys behind one interface: PEM files, a PKCS#12 file, or a PKCS#11 token.

The CMS code only needs a chain and a `sign(data)`; where the private key lives is configuration.
PEM and PKCS#12 suit development and a Kubernetes Secret; PKCS#11 suits an HSM, where the key
never leaves the device.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from pkcs11 import KeyType, Mechanism, ObjectClass

from services.signer.pki import (
    PkiError,
    SigningIdentity,
    key_algorithm_name,
    load_signing_identity,
    load_trust_roots,
)

KeyKind = Literal["pem", "pkcs12", "pkcs11"]


class Signer(Protocol):
    """What the CMS builder needs from a key: who signs, and a signature over some bytes."""

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The certificate chain, leaf first; a tuple, so CMS code can cache what it derives from it."""
        ...

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def key_algorithm(self) -> str:
        """E.g. "RSA-3072" or "ECDSA-P256"; tells the CMS builder which signature algorithm to name."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign `data` with SHA-256: RSA PKCS#1 v1.5, or ECDSA with a DER-encoded signature."""
        ...


@dataclass(frozen=True)
class KeySpec:
    """Where the signing key is, as configured (EMETERAI_SIGNER_KEY_KIND and friends).

    `chain_path` is a PEM chain, leaf first. It is required for "pem" and "pkcs11"; for "pkcs12"
    it is optional and adds certificates the file lacks.
    """

    kind: KeyKind = "pem"
    key_path: Path | None = None
    chain_path: Path | None = None
    pkcs12_path: Path | None = None
    pkcs12_password: str | None = field(default=None, repr=False)
    pkcs11_module: Path | None = None
    pkcs11_token: str | None = None
    pkcs11_key_label: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)


def load_identity(spec: KeySpec) -> Signer:
    """Open the configured key. Picklable as `functools.partial(load_identity, spec)`, so each
    worker process opens its own (a PKCS#11 session cannot be shared between processes)."""
    if spec.kind == "pem":
        _require(spec, "key_path", "chain_path")
        assert spec.key_path is not None and spec.chain_path is not None
        return load_signing_identity(spec.key_path, spec.chain_path)
    if spec.kind == "pkcs12":
        _require(spec, "pkcs12_path")
        assert spec.pkcs12_path is not None
        extra = load_trust_roots(spec.chain_path) if spec.chain_path is not None else []
        return load_pkcs12_identity(spec.pkcs12_path, spec.pkcs12_password, extra_certificates=extra)
    if spec.kind == "pkcs11":
        _require(spec, "pkcs11_module", "pkcs11_token", "pkcs11_key_label", "pkcs11_pin", "chain_path")
        assert spec.chain_path is not None and spec.pkcs11_module is not None
        return Pkcs11Identity.open(
            spec.pkcs11_module,
            token_label=str(spec.pkcs11_token),
            key_label=str(spec.pkcs11_key_label),
            pin=str(spec.pkcs11_pin),
            chain=load_trust_roots(spec.chain_path),
        )
    raise PkiError(f"EMETERAI_SIGNER_KEY_KIND must be pem, pkcs12 or pkcs11, not {spec.kind!r}")


def _require(spec: KeySpec, *names: str) -> None:
    missing = [_SETTING_NAMES[name] for name in names if getattr(spec, name) in (None, "")]
    if missing:
        raise PkiError(f"a {spec.kind} signing key needs " + ", ".join(missing))


# KeySpec field -> the setting it comes from, for messages an operator can act on.
_SETTING_NAMES = {
    "key_path": "EMETERAI_SIGNER_KEY_PATH",
    "chain_path": "EMETERAI_SIGNER_CERT_CHAIN_PATH",
    "pkcs12_path": "EMETERAI_SIGNER_PKCS12_PATH",
    "pkcs11_module": "EMETERAI_SIGNER_PKCS11_MODULE",
    "pkcs11_token": "EMETERAI_SIGNER_PKCS11_TOKEN",
    "pkcs11_key_label": "EMETERAI_SIGNER_PKCS11_KEY_LABEL",
    "pkcs11_pin": "EMETERAI_SIGNER_PKCS11_PIN",
}


def load_pkcs12_identity(
    path: Path, password: str | None, *, extra_certificates: Sequence[x509.Certificate] = ()
) -> SigningIdentity:
    """Read a PKCS#12 file (.p12/.pfx): the key, its certificate and any CA certificates in it."""
    try:
        key, certificate, additional = pkcs12.load_key_and_certificates(
            path.read_bytes(), password.encode() if password else None
        )
    except OSError as exc:
        raise PkiError(f"cannot read the PKCS#12 file {path}: {exc}") from exc
    except ValueError as exc:
        # cryptography says "Invalid password or PKCS12 data" for both.
        raise PkiError(f"cannot open the PKCS#12 file {path}: wrong password or not PKCS#12") from exc
    if key is None or certificate is None:
        raise PkiError(f"{path} must hold a private key and its certificate")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: only RSA and ECDSA signing keys are supported")
    return SigningIdentity(key, tuple(_order_chain(certificate, [*additional, *extra_certificates])))


def _order_chain(leaf: x509.Certificate, others: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    # A PKCS#12 file keeps its CA certificates in no particular order; CMS readers expect leaf first.
    chain = [leaf]
    remaining = [cert for cert in dict.fromkeys(others) if cert != leaf]
    while remaining:
        issuer = next((cert for cert in remaining if cert.subject == chain[-1].issuer), None)
        if issuer is None or chain[-1].issuer == chain[-1].subject:
            break
        chain.append(issuer)
        remaining.remove(issuer)
    return chain + remaining


class Pkcs11Identity:
    """A private key on a PKCS#11 token, with its certificate chain from a file.

    The session stays open and logged in and the key handle loaded, so a signature costs one
    token call. A PKCS#11 session must not run two operations at once: a lock serialises signers
    on this identity; for parallel signing open one identity per worker process.
    """

    def __init__(
        self,
        session: pkcs11.Session,
        key: pkcs11.PrivateKey,
        chain: Sequence[x509.Certificate],
        reopen: tuple[Path, str, str, str],
    ) -> None:
        self._session = session
        self._key = key
        self._chain = tuple(chain)
        self._reopen = reopen
        self._lock = threading.Lock()
        self._rsa = key.key_type == KeyType.RSA

    @classmethod
    def open(
        cls,
        module_path: Path | str,
        token_label: str,
        key_label: str,
        pin: str,
        chain: Sequence[x509.Certificate],
    ) -> Pkcs11Identity:
        """Log in to the token labelled `token_label` and find the private key labelled `key_label`.

        Checks with one test signature that the key belongs to `chain[0]`.
        """
        if not chain:
            raise PkiError("the certificate chain is empty")
        module_path = Path(module_path)
        where = f"PKCS#11 token {token_label!r}"
        try:
            library = pkcs11.lib(str(module_path))
        except (OSError, RuntimeError, pkcs11.PKCS11Error) as exc:
            raise PkiError(f"cannot load the PKCS#11 module {module_path}: {exc}") from exc
        try:
            token = library.get_token(token_label=token_label)
        except pkcs11.NoSuchToken as exc:
            raise PkiError(f"no {where} in {module_path}") from exc
        except pkcs11.MultipleTokensReturned as exc:
            raise PkiError(f"more than one {where} in {module_path}") from exc
        try:
            session = _log_in(token, pin)
        except pkcs11.PinIncorrect as exc:
            raise PkiError(f"the PIN for {where} is wrong") from exc
        except pkcs11.PinLocked as exc:
            raise PkiError(f"the PIN of {where} is locked; its security officer must reset it") from exc
        except pkcs11.PKCS11Error as exc:
            raise PkiError(f"cannot log in to {where}: {type(exc).__name__}") from exc
        try:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
            if key.key_type not in (KeyType.RSA, KeyType.EC):
                raise PkiError(f"the key {key_label!r} on {where} is neither RSA nor EC")
            identity = cls(session, key, chain, (module_path, token_label, key_label, pin))  # type: ignore[arg-type]
            identity._check_key_matches_certificate(f"the key {key_label!r} on {where}")
        except pkcs11.NoSuchKey as exc:
            session.close()
            raise PkiError(f"no private key labelled {key_label!r} on {where}") from exc
        except pkcs11.MultipleObjectsReturned as exc:
            session.close()
            raise PkiError(f"more than one private key labelled {key_label!r} on {where}") from exc
        except BaseException:
            session.close()
            raise
        return identity

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self._chain

    @property
    def certificate(self) -> x509.Certificate:
        return self._chain[0]

    @property
    def key_algorithm(self) -> str:
        return key_algorithm_name(self.certificate.public_key())

    def sign(self, data: bytes) -> bytes:
        with self._lock:
            if self._rsa:
                return self._key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
            # Plain CKM_ECDSA over our own digest: every token has it, unlike CKM_ECDSA_SHA256.
            raw = self._key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def __enter__(self) -> Pkcs11Identity:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        module, token, key, _ = self._reopen
        return f"Pkcs11Identity(module={str(module)!r}, token={token!r}, key={key!r}, {self.key_algorithm})"

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # A session belongs to one process: a copy in a worker process logs in afresh.
        module, token, key, pin = self._reopen
        return _reopen_pkcs11, (
            module,
            token,
            key,
            pin,
            tuple(cert.public_bytes(serialization.Encoding.DER) for cert in self._chain),
        )

    def _check_key_matches_certificate(self, what: str) -> None:
        probe = b"e-meterai key check"
        public_key = self.certificate.public_key()
        try:
            signature = self.sign(probe)
            if isinstance(public_key, rsa.RSAPublicKey) and self._rsa:
                public_key.verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(public_key, ec.EllipticCurvePublicKey) and not self._rsa:
                public_key.verify(signature, probe, ec.ECDSA(hashes.SHA256()))
            else:
                raise InvalidSignature
        except InvalidSignature:
            raise PkiError(f"{what} does not belong to the first certificate of the chain") from None


def _log_in(token: pkcs11.Token, pin: str) -> pkcs11.Session:
    try:
        return token.open(user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn:
        # A PKCS#11 login belongs to the process, not the session: another identity in this
        # process already logged in to the token, and a new session shares that login.
        return token.open()


def _reopen_pkcs11(
    module: Path, token: str, key: str, pin: str, chain_der: tuple[bytes, ...]
) -> Pkcs11Identity:
    chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    return Pkcs11Identity.open(module, token, key, pin, chain)
