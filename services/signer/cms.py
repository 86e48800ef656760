"""CMS SignedData for PDF signatures: building ours, and checking anyone's.

A PAdES signature is a detached CMS SignedData over the bytes its /ByteRange covers. We sign the
DER of the signed attributes (content-type, message-digest, ESS signing-certificate-v2) and embed
the whole chain. We leave out the signing-time attribute on purpose: PAdES takes the claimed time
from the signature dictionary's /M, and a trusted time only from a timestamp token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from services.signer.cms_template import TimestampSource, sign_detached
from services.signer.pki import SigningIdentity

# Hash functions a verifier accepts, by asn1crypto's names.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def build_detached_signature(
    identity: SigningIdentity, document_digest: bytes, *, timestamp: TimestampSource | None = None
) -> bytes:
    """DER ContentInfo(SignedData) over a SHA-256 `document_digest`, signed by `identity`.

    `timestamp`, when given, turns the signature value into an RFC 3161 TimeStampToken (DER),
    embedded as the signature-time-stamp-token unsigned attribute (PAdES B-T).
    """
    return sign_detached(identity, document_digest, timestamp=timestamp)


class CmsError(ValueError):
    """The CMS structure is malformed or uses something we cannot check."""


@dataclass(frozen=True)
class CmsCheck:
    """What a CMS SignedData says about the bytes it signs."""

    digest_algorithm: str
    # The digest the signature vouches for: message-digest, or a timestamp's message imprint.
    claimed_digest: bytes
    signature_valid: bool
    signer: x509.Certificate | None
    certificates: list[x509.Certificate]
    # A document timestamp (ETSI.RFC3161) rather than a signature by a person or organisation.
    is_timestamp_token: bool
    # The time a timestamp authority vouches for: the token's own, or one in the unsigned attributes.
    timestamp_time: datetime | None
    problems: list[str]


def check_signed_data(der: bytes) -> CmsCheck:
    """Parse a ContentInfo(SignedData) and verify its signer's signature over the signed attributes.

    Does not look at the document: the caller compares `claimed_digest` with the digest of the
    bytes the PDF says are signed. Raises CmsError when the structure cannot be read at all.
    """
    try:
        content_info = cms.ContentInfo.load(der)
        if content_info["content_type"].native != "signed_data":
            raise CmsError("the signature is not a CMS SignedData")
        signed_data = content_info["content"]
        signer_infos = signed_data["signer_infos"]
        if len(signer_infos) != 1:
            raise CmsError(f"the signature has {len(signer_infos)} signers; exactly one is expected")
        signer_info = signer_infos[0]
        certificates = [
            x509.load_der_x509_certificate(choice.chosen.dump())
            for choice in (signed_data["certificates"] or [])
            if choice.name == "certificate"
        ]
        return _check_signer(signed_data, signer_info, certificates)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # asn1crypto parses lazily, so malformed DER surfaces here as any of these.
        raise CmsError(f"the signature data cannot be read ({type(exc).__name__})") from exc


def _check_signer(
    signed_data: cms.SignedData, signer_info: cms.SignerInfo, certificates: list[x509.Certificate]
) -> CmsCheck:
    problems: list[str] = []
    digest_algorithm = signer_info["digest_algorithm"]["algorithm"].native
    if digest_algorithm not in _HASHES:
        raise CmsError(f"the signature uses an unsupported digest algorithm ({digest_algorithm})")

    signer = _find_signer(signer_info["sid"], certificates)
    if signer is None:
        problems.append("the signer's certificate is not embedded in the signature")

    encapsulated = signed_data["encap_content_info"]
    is_timestamp_token = encapsulated["content_type"].native == "tst_info"
    timestamp_time: datetime | None = None

    signed_attrs = signer_info["signed_attrs"]
    if isinstance(signed_attrs, core.Void) or len(signed_attrs) == 0:
        raise CmsError("the signature has no signed attributes")
    message_digest = _attribute(signed_attrs, "message_digest")
    if message_digest is None:
        raise CmsError("the signature has no message-digest attribute")
    if is_timestamp_token:
        # A document timestamp signs the TSTInfo, whose message imprint is the document's digest.
        tst_info = encapsulated["content"].parsed
        if _digest(digest_algorithm, encapsulated["content"].contents) != message_digest:
            problems.append("the timestamp token's message-digest does not match its content")
        timestamp_time = tst_info["gen_time"].native
        imprint = tst_info["message_imprint"]
        digest_algorithm = imprint["hash_algorithm"]["algorithm"].native
        if digest_algorithm not in _HASHES:
            raise CmsError(f"the timestamp uses an unsupported digest algorithm ({digest_algorithm})")
        claimed_digest = imprint["hashed_message"].native
    else:
        claimed_digest = message_digest

    signature_valid = False
    if signer is not None:
        # What was signed is the DER SET OF the attributes; on the wire they carry an implicit
        # [0] tag instead, so only the first byte differs.
        signed_bytes = b"\x31" + signed_attrs.dump()[1:]
        signature_valid = _verify(
            signer,
            signer_info["signature"].native,
            signed_bytes,
            signer_info["signature_algorithm"],
            signer_info["digest_algorithm"]["algorithm"].native,
        )
        if not signature_valid:
            problems.append("the cryptographic signature does not verify with the signer's certificate")

    unsigned = signer_info["unsigned_attrs"]
    # Checked without `.native`: converting a long-term signature's revocation data costs a second.
    if not isinstance(unsigned, core.Void) and timestamp_time is None:
        for attribute in unsigned:
            if attribute["type"].native == "signature_time_stamp_token":
                # Reported, not yet verified: checking the token's own signature and its TSA
                # chain comes with timestamping support.
                token = attribute["values"][0]
                timestamp_time = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
                break
    return CmsCheck(
        digest_algorithm=digest_algorithm,
        claimed_digest=claimed_digest,
        signature_valid=signature_valid,
        signer=signer,
        certificates=certificates,
        is_timestamp_token=is_timestamp_token,
        timestamp_time=timestamp_time,
        problems=problems,
    )


def document_digest(algorithm: str, chunks: list[bytes]) -> bytes:
    hasher = hashlib.new(algorithm)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.digest()


def _digest(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(algorithm, data).digest()


def _attribute(attributes: cms.CMSAttributes, name: str) -> bytes | None:
    for attribute in attributes:
        if attribute["type"].native == name:
            values = attribute["values"]
            return values[0].native if len(values) else None
    return None


def _find_signer(sid: cms.SignerIdentifier, certificates: list[x509.Certificate]) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer = asn1_x509.Name.load(sid.chosen["issuer"].dump())
        serial = sid.chosen["serial_number"].native
        for cert in certificates:
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer.dump():
                return cert
        return None
    key_identifier = sid.chosen.native
    for cert in certificates:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            continue
        if ski == key_identifier:
            return cert
    return None


def _verify(
    cert: x509.Certificate,
    signature: bytes,
    data: bytes,
    algorithm: algos.SignedDigestAlgorithm,
    digest_name: str,
) -> bool:
    try:
        key = cert.public_key()
        scheme = algorithm.signature_algo
        if scheme == "rsassa_pss":
            params = algorithm["parameters"]
            pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]()
            mgf_hash = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=params["salt_length"].native),
                pss_hash,
            )
            return True
        try:
            hash_name = algorithm.hash_algo
        except ValueError:
            # Plain "rsaEncryption" names no hash; the signer info's digest algorithm applies.
            hash_name = digest_name
        chosen_hash = _HASHES[hash_name]()
        if scheme == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), chosen_hash)
        elif scheme == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(chosen_hash))
        elif scheme == "dsa" and isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, chosen_hash)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
        return True
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
