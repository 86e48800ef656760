"""The hand-assembled CMS: byte for byte what asn1crypto encodes, and open to a timestamp token."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.signer.cms import build_detached_signature, check_signed_data
from services.signer.cms_template import SIGNATURE_TIME_STAMP_TOKEN_OID, der_header, template_for
from services.signer.pki import SigningIdentity

DIGEST = hashlib.sha256(b"the bytes a /ByteRange covers").digest()


def encoded_with_asn1crypto(identity: SigningIdentity, document_digest: bytes) -> bytes:
    """The whole SignedData built the straightforward way, as the signer did before the template."""
    chain = [
        asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)) for cert in identity.chain
    ]
    leaf = chain[0]
    signing_certificate = tsp.SigningCertificateV2(
        {
            "certs": [
                {
                    "cert_hash": hashlib.sha256(leaf.dump()).digest(),
                    "issuer_serial": {
                        "issuer": [asn1_x509.GeneralName(name="directory_name", value=leaf.issuer)],
                        "serial_number": leaf.serial_number,
                    },
                }
            ]
        }
    )
    signed_attributes = cms.CMSAttributes(
        sorted(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
                cms.CMSAttribute({"type": "message_digest", "values": [document_digest]}),
                cms.CMSAttribute({"type": "signing_certificate_v2", "values": [signing_certificate]}),
            ],
            key=lambda attribute: attribute.dump(),
        )
    )
    is_rsa = isinstance(identity.private_key, rsa.RSAPrivateKey)
    # Signed as a SET OF, before SignerInfo re-tags the attributes [0].
    signature = identity.sign(signed_attributes.dump())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {"issuer_and_serial_number": {"issuer": leaf.issuer, "serial_number": leaf.serial_number}}
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attributes,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15" if is_rsa else "sha256_ecdsa"},
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [cms.CertificateChoices(name="certificate", value=cert) for cert in chain],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**24])
def test_der_lengths_match_asn1crypto(length: int) -> None:
    assert der_header(0x04, length) + b"x" * length == core.OctetString(b"x" * length).dump()


def test_rsa_signature_is_byte_for_byte_the_asn1crypto_encoding(identity: SigningIdentity) -> None:
    # RSA PKCS#1 v1.5 is deterministic, so the two encodings must agree to the last byte.
    assert build_detached_signature(identity, DIGEST) == encoded_with_asn1crypto(identity, DIGEST)


def test_ecdsa_signature_differs_only_in_the_signature_value(
    ecdsa_pki: tuple[SigningIdentity, x509.Certificate],
) -> None:
    ecdsa_identity, _ = ecdsa_pki
    ours = cms.ContentInfo.load(build_detached_signature(ecdsa_identity, DIGEST))
    reference = cms.ContentInfo.load(encoded_with_asn1crypto(ecdsa_identity, DIGEST))
    ours_signer = ours["content"]["signer_infos"][0]
    reference_signer = reference["content"]["signer_infos"][0]
    for name in ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm"):
        assert ours_signer[name].dump() == reference_signer[name].dump(), name
    for name in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert ours["content"][name].dump() == reference["content"][name].dump(), name
    check = check_signed_data(ours.dump())
    assert check.signature_valid and check.claimed_digest == DIGEST and check.problems == []


def test_the_template_is_built_once_per_chain(identity: SigningIdentity) -> None:
    build_detached_signature(identity, DIGEST)
    before = template_for.cache_info()
    build_detached_signature(identity, bytes(32))
    after = template_for.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


def fake_timestamp_token(signature: bytes, gen_time: dt.datetime) -> bytes:
    """A well-formed TimeStampToken over `signature`, signed by a throwaway key (not a real TSA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    tst_info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.3.6.1.4.1.99999.1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(signature).digest(),
            },
            "serial_number": 7,
            "gen_time": gen_time,
        }
    )
    attributes = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(tst_info.dump()).digest()]}
            ),
        ]
    )
    signer_info = cms.SignerInfo(
        {
            "version": "v3",
            "sid": cms.SignerIdentifier({"subject_key_identifier": b"\x01" * 20}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": key.sign(b"\x31" + attributes.dump()[1:], ec.ECDSA(hashes.SHA256())),
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def test_a_timestamp_token_over_the_signature_value_lands_in_the_unsigned_attributes(
    identity: SigningIdentity,
) -> None:
    gen_time = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)
    seen: list[bytes] = []

    def timestamp(signature: bytes) -> bytes:
        seen.append(signature)
        return fake_timestamp_token(signature, gen_time)

    der = build_detached_signature(identity, DIGEST, timestamp=timestamp)
    signer_info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert seen == [signer_info["signature"].native]
    (attribute,) = signer_info["unsigned_attrs"]
    assert attribute["type"].dotted == SIGNATURE_TIME_STAMP_TOKEN_OID
    token = attribute["values"][0]
    imprint = token["content"]["encap_content_info"]["content"].parsed["message_imprint"]
    assert imprint["hashed_message"].native == hashlib.sha256(seen[0]).digest()

    check = check_signed_data(der)
    assert check.signature_valid and check.claimed_digest == DIGEST
    assert check.timestamp_time == gen_time
