"""Certificate chains: from a signer's (or a timestamp authority's) certificate to a trust root."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

# Longest chain we follow from the signer to a root.
MAX_CHAIN = 8


def chain_trusted(
    leaf: x509.Certificate,
    certificates: list[x509.Certificate],
    trust_roots: list[x509.Certificate],
    at: dt.datetime,
    *,
    whose: str = "signer's",
) -> tuple[bool, list[str]]:
    """Walk issuer by issuer from `leaf` to a trust root, checking each link's signature and that
    every certificate on the way was valid at `at`. `whose` names the leaf in problems."""
    if not trust_roots:
        return False, ["No trust roots are configured, so the certificate chain was not checked."]
    roots = {_der(root) for root in trust_roots}
    path = [leaf]
    current = leaf
    for _ in range(MAX_CHAIN):
        if _der(current) in roots:
            return _valid_during(path, at)
        root = next((root for root in trust_roots if _issued_by(current, root)), None)
        if root is not None:
            return _valid_during([*path, root], at)
        issuer = next(
            (
                candidate
                for candidate in certificates
                if candidate is not current and _is_ca(candidate) and _issued_by(current, candidate)
            ),
            None,
        )
        if issuer is None or issuer in path:
            break
        path.append(issuer)
        current = issuer
    return False, [f"The {whose} certificate does not chain to a trusted root."]


def _valid_during(path: list[x509.Certificate], at: dt.datetime) -> tuple[bool, list[str]]:
    problems = [
        f"The certificate {cert.subject.rfc4514_string()} was not valid at {at:%Y-%m-%d %H:%M:%S} UTC."
        for cert in path
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
    ]
    return not problems, problems


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
