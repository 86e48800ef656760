"""Our CMS SignedData, encoded once per signing identity and completed per signature by hand.

Of a PAdES signature's few kilobytes, only three things change from one document to the next:
the document digest inside the message-digest attribute, the signature value, and (for B-T) a
timestamp token among the unsigned attributes. Everything else (the certificates, the signer's
issuer and serial, the algorithm identifiers, the content-type and signing-certificate-v2
attributes) is encoded once with asn1crypto and kept as DER. Per signature we only concatenate
those pieces and write the few length headers that wrap the variable parts; re-encoding the
whole structure with asn1crypto cost several times more than the RSA signature itself.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from asn1crypto import algos, cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

# id-aa-signatureTimeStampToken (RFC 3161 appendix A): an unsigned attribute holding a timestamp
# token over the signature value; it turns a PAdES B-B signature into B-T.
SIGNATURE_TIME_STAMP_TOKEN_OID = "1.2.840.113549.1.9.16.2.14"

# Given the signature value, the DER of a TimeStampToken (a ContentInfo) vouching for it.
TimestampSource = Callable[[bytes], bytes]


class Signs(Protocol):
    """What the template needs of an identity: a chain (leaf first) and a SHA-256 signature."""

    @property
    def chain(self) -> tuple[x509.Certificate, ...]: ...

    def sign(self, data: bytes) -> bytes: ...


def der_header(tag: int, length: int) -> bytes:
    """A DER tag and definite length for `length` bytes of content."""
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def der(tag: int, content: bytes) -> bytes:
    return der_header(tag, len(content)) + content


_SEQUENCE = 0x30
_SET = 0x31
_OCTET_STRING = 0x04
_CONTEXT_0 = 0xA0  # [0], constructed
_CONTEXT_1 = 0xA1  # [1], constructed
_INTEGER_1 = b"\x02\x01\x01"
_SIGNED_DATA_OID = cms.ContentType("signed_data").dump()
_MESSAGE_DIGEST_OID = cms.CMSAttributeType("message_digest").dump()
_TIMESTAMP_TOKEN_OID = cms.CMSAttributeType(SIGNATURE_TIME_STAMP_TOKEN_OID).dump()


@dataclass(frozen=True)
class CmsTemplate:
    """The fixed DER pieces of a detached SignedData for one certificate chain."""

    # SET OF DigestAlgorithmIdentifier, EncapsulatedContentInfo and [0] certificates, in order.
    signed_data_middle: bytes
    # SignerInfo fields before the signed attributes: version, sid, digestAlgorithm.
    signer_info_head: bytes
    signature_algorithm: bytes
    # The content-type and signing-certificate-v2 attributes, each a whole Attribute.
    fixed_attributes: tuple[bytes, ...]

    def signed_attributes(self, document_digest: bytes) -> bytes:
        """The content of the signed attributes' SET OF: DER orders it by the members' encodings."""
        message_digest = der(_SEQUENCE, _MESSAGE_DIGEST_OID + der(_SET, der(_OCTET_STRING, document_digest)))
        return b"".join(sorted((*self.fixed_attributes, message_digest)))

    def signed_data(
        self, signed_attributes: bytes, signature: bytes, timestamp_token: bytes | None = None
    ) -> bytes:
        """The ContentInfo(SignedData) DER around `signature` over `signed_attributes`."""
        unsigned = b""
        if timestamp_token is not None:
            attribute = der(_SEQUENCE, _TIMESTAMP_TOKEN_OID + der(_SET, timestamp_token))
            unsigned = der(_CONTEXT_1, attribute)
        signer_info = der(
            _SEQUENCE,
            self.signer_info_head
            + der(_CONTEXT_0, signed_attributes)
            + self.signature_algorithm
            + der(_OCTET_STRING, signature)
            + unsigned,
        )
        signed_data = der(_SEQUENCE, _INTEGER_1 + self.signed_data_middle + der(_SET, signer_info))
        return der(_SEQUENCE, _SIGNED_DATA_OID + der(_CONTEXT_0, signed_data))


def sign_detached(
    identity: Signs, document_digest: bytes, *, timestamp: TimestampSource | None = None
) -> bytes:
    """DER ContentInfo(SignedData) over a SHA-256 `document_digest`, signed by `identity`."""
    template = template_for(identity.chain)
    attributes = template.signed_attributes(document_digest)
    # What is signed is the attributes as a SET OF; on the wire they carry an implicit [0] tag.
    signature = identity.sign(der(_SET, attributes))
    token = timestamp(signature) if timestamp is not None else None
    return template.signed_data(attributes, signature, token)


def signing_certificate_v2(leaf: asn1_x509.Certificate) -> cms.CMSAttribute:
    """The ESS signing-certificate-v2 attribute (RFC 5035) binding a signature to its certificate."""
    return cms.CMSAttribute(
        {
            "type": "signing_certificate_v2",
            "values": [
                tsp.SigningCertificateV2(
                    {
                        "certs": [
                            {
                                # SHA-256 is the field's default, so DER leaves it out.
                                "cert_hash": hashlib.sha256(leaf.dump()).digest(),
                                "issuer_serial": {
                                    "issuer": [
                                        asn1_x509.GeneralName(name="directory_name", value=leaf.issuer)
                                    ],
                                    "serial_number": leaf.serial_number,
                                },
                            }
                        ]
                    }
                )
            ],
        }
    )


@functools.lru_cache(maxsize=16)
def template_for(chain: tuple[x509.Certificate, ...]) -> CmsTemplate:
    """The template for a chain (leaf first); built once, then looked up by the certificates."""
    certificates = [
        asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)) for cert in chain
    ]
    leaf = certificates[0]
    digest_algorithm = algos.DigestAlgorithm({"algorithm": "sha256"})
    leaf_key = chain[0].public_key()
    if isinstance(leaf_key, rsa.RSAPublicKey):
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    elif isinstance(leaf_key, ec.EllipticCurvePublicKey):
        signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    else:
        raise ValueError("only RSA and ECDSA signing certificates are supported")

    content_type = cms.CMSAttribute({"type": "content_type", "values": ["data"]})
    signing_certificate = signing_certificate_v2(leaf)
    sid = cms.SignerIdentifier(
        {"issuer_and_serial_number": {"issuer": leaf.issuer, "serial_number": leaf.serial_number}}
    )
    return CmsTemplate(
        signed_data_middle=(
            der(_SET, digest_algorithm.dump())
            + cms.EncapsulatedContentInfo({"content_type": "data"}).dump()
            # A SET OF, so DER orders the certificates by their encodings, not leaf first.
            + der(_CONTEXT_0, b"".join(sorted(cert.dump() for cert in certificates)))
        ),
        signer_info_head=_INTEGER_1 + sid.dump() + digest_algorithm.dump(),
        signature_algorithm=signature_algorithm.dump(),
        fixed_attributes=(content_type.dump(), signing_certificate.dump()),
    )
