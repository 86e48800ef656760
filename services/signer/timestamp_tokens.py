"""Checking the RFC 3161 timestamp token inside a CAdES signature (PAdES B-T).

The token sits in the signer's unsigned attributes (signature-time-stamp-token). It proves the
signature value existed at the token's time when: its TSTInfo's message imprint is the hash of
the signature value, its own CMS signature verifies, and the timestamp authority's certificate
(extended key usage timeStamping) chains to a trust root at that time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from asn1crypto import cms, core
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.signer.chains import chain_trusted
from services.signer.cms import CmsCheck, CmsError, check_signed_data

_SIGNATURE_TIME_STAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"


@dataclass(frozen=True)
class TimestampCheck:
    time: dt.datetime | None
    valid: bool
    authority: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbeddedTimestamp:
    """A signature value and the token that timestamps it, as DER."""

    signature_value: bytes
    token: bytes


def find_signature_timestamp(signed_data: bytes) -> EmbeddedTimestamp | None:
    """The signature-time-stamp-token of the (single) signer of a CMS SignedData, if it has one."""
    try:
        signer_info = cms.ContentInfo.load(signed_data)["content"]["signer_infos"][0]
        unsigned = signer_info["unsigned_attrs"]
        if isinstance(unsigned, core.Void):
            return None
        for attribute in unsigned:
            if attribute["type"].dotted == _SIGNATURE_TIME_STAMP_TOKEN and len(attribute["values"]):
                return EmbeddedTimestamp(signer_info["signature"].native, attribute["values"][0].dump())
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CmsError("the signature's timestamp attribute cannot be read") from exc
    return None


def check_signature_timestamp(
    embedded: EmbeddedTimestamp, trust_roots: list[x509.Certificate]
) -> TimestampCheck:
    """Verify a signature timestamp token: imprint, the token's own signature, the TSA's chain."""
    try:
        check = check_signed_data(embedded.token)
    except CmsError as exc:
        return TimestampCheck(None, False, "", (f"The signature's timestamp is unreadable: {exc}.",))
    if not check.is_timestamp_token:
        return TimestampCheck(
            None, False, "", ("The signature's timestamp attribute holds no timestamp token.",)
        )
    problems = [f"The signature's timestamp: {problem}." for problem in check.problems]
    imprint = hashlib.new(check.digest_algorithm, embedded.signature_value).digest()
    if imprint != check.claimed_digest:
        problems.append("The signature's timestamp was issued for a different signature value.")
    trusted, chain_problems = authority_trusted(check, trust_roots)
    problems += chain_problems
    return TimestampCheck(
        time=check.timestamp_time,
        valid=check.signature_valid and imprint == check.claimed_digest and trusted and not check.problems,
        authority=check.signer.subject.rfc4514_string() if check.signer is not None else "",
        problems=tuple(problems),
    )


def authority_trusted(check: CmsCheck, trust_roots: list[x509.Certificate]) -> tuple[bool, list[str]]:
    """Whether a timestamp token's signer is a timestamp authority that chains to a trust root."""
    if check.signer is None or check.timestamp_time is None:
        return False, []
    problems: list[str] = []
    try:
        usages = check.signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        is_authority = ExtendedKeyUsageOID.TIME_STAMPING in usages
    except x509.ExtensionNotFound:
        is_authority = False
    if not is_authority:
        problems.append("The timestamp authority's certificate is not issued for timestamping.")
    trusted, chain_problems = chain_trusted(
        check.signer, check.certificates, trust_roots, check.timestamp_time, whose="timestamp authority's"
    )
    return is_authority and trusted, problems + chain_problems
