"""Our own RFC 3161 timestamp authority, and what every timestamp source must check.

A PAdES B-T signature carries a timestamp token over its signature value: proof from a third
party that the signature existed at that time. The project runs its own authority (a key and a
certificate with extendedKeyUsage timeStamping) so B-T works without an outside service; an
external TSA is reached over HTTP by `tsa_client.HttpTimestampClient` instead.

`TimestampAuthority` turns requests into responses and knows nothing of HTTP; `tsa_http` serves
it. `LocalTimestamper` lets a signer timestamp its own signatures without a network hop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common.errors import Unavailable
from services.signer.cms_template import signing_certificate_v2
from services.signer.keys import Signer
from services.signer.pki import PkiError

log = logging.getLogger(__name__)

# The development authority's policy: a UUID-based OID (ITU-T X.667), ours without registration.
# A production TSA states the policy OID its CA's practice statement assigns.
DEV_TSA_POLICY_OID = "2.25.184809660615818941353726895786752606433"

# Digest algorithms we timestamp, by asn1crypto's names, with their digest lengths.
_DIGEST_LENGTHS = {"sha256": 32, "sha384": 48, "sha512": 64}


class Timestamper(Protocol):
    """Anything that turns a signature value into a timestamp token (ContentInfo DER) over it.

    `timestamper.timestamp` is the `timestamp` hook of the CMS builder.
    """

    def timestamp(self, data: bytes) -> bytes: ...


class TimestampFailed(Unavailable):
    """No usable timestamp token: the authority is unreachable, refused, or answered wrongly.

    `message` is safe to show a user; `detail` names the authority for operators' logs.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class TimeStampResp(core.Sequence):
    """RFC 3161's TimeStampResp. asn1crypto's own requires the token, which a rejection leaves out."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejection(Exception):
    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimestampAuthority:
    """Issues RFC 3161 timestamp tokens signed by `identity`, whose certificate must be a TSA's.

    A token is a few fixed pieces (certificates, who signs, algorithms, the TSA's name) around a
    few variable ones (serial, time, imprint, nonce, signature). The fixed pieces are encoded once
    with asn1crypto; per token we join DER by hand, because re-encoding the certificates with
    asn1crypto cost 20 ms a token, a hundred times the signature.
    """

    def __init__(
        self,
        identity: Signer,
        policy_oid: str = DEV_TSA_POLICY_OID,
        clock: Callable[[], dt.datetime] = _utc_now,
        accuracy: dt.timedelta = dt.timedelta(seconds=1),
    ) -> None:
        _check_tsa_certificate(identity.certificate)
        self._identity = identity
        self._policy = core.ObjectIdentifier(policy_oid)
        self._clock = clock
        chain = [
            asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in identity.chain
        ]
        leaf = chain[0]
        whole_seconds = {"seconds": int(accuracy.total_seconds())}
        millis = {"millis": accuracy.microseconds // 1000} if accuracy.microseconds >= 1000 else {}
        self._tst_policy = core.Integer(1).dump() + self._policy.dump()
        self._tst_accuracy = tsp.Accuracy(whole_seconds | millis).dump()
        # tsa [0] EXPLICIT GeneralName
        self._tst_tsa = _der(0xA0, asn1_x509.GeneralName(name="directory_name", value=leaf.subject).dump())
        sha256 = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        # SignedData up to the encapsulated content: version 3 (eContentType is not id-data), digests.
        self._signed_data_head = core.Integer(3).dump() + _der(_SET, sha256)
        self._tst_info_type = cms.ContentType("tst_info").dump()
        # certificates [0] IMPLICIT SET OF CertificateChoices, in DER's order for a SET OF.
        self._certificates = _der(0xA0, b"".join(sorted(cert.dump() for cert in chain)))
        issuer_and_serial = cms.IssuerAndSerialNumber(
            {"issuer": leaf.issuer, "serial_number": leaf.serial_number}
        )
        self._signer_info_head = core.Integer(1).dump() + issuer_and_serial.dump() + sha256
        self._signature_algorithm = algos.SignedDigestAlgorithm(
            {"algorithm": "sha256_rsa" if identity.key_algorithm.startswith("RSA") else "sha256_ecdsa"}
        ).dump()
        self._content_type_attribute = cms.CMSAttribute(
            {"type": "content_type", "values": ["tst_info"]}
        ).dump()
        self._message_digest_type = cms.CMSAttributeType("message_digest").dump()
        self._signing_certificate_attribute = signing_certificate_v2(leaf).dump()
        self._imprint_algorithms = {
            name: algos.DigestAlgorithm({"algorithm": name}).dump() for name in _DIGEST_LENGTHS
        }

    @property
    def certificate(self) -> x509.Certificate:
        return self._identity.certificate

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp: granted, or rejected with a reason."""
        try:
            digest, algorithm, nonce, cert_req = _read_request(request_der, self._policy)
            token = self.issue(digest, hash_algorithm=algorithm, nonce=nonce, include_certificates=cert_req)
        except _Rejection as rejection:
            return _rejection(rejection.failure, rejection.text)
        except Exception:
            log.exception("the timestamp authority failed to sign a token")
            return _rejection("system_failure", "the timestamp authority could not sign")
        return _der(_SEQUENCE, tsp.PKIStatusInfo({"status": "granted"}).dump() + token)

    def issue(
        self,
        message_imprint: bytes,
        *,
        hash_algorithm: str = "sha256",
        nonce: int | None = None,
        include_certificates: bool = True,
    ) -> bytes:
        """A TimeStampToken (ContentInfo DER) over `message_imprint`, a digest made with `hash_algorithm`."""
        if _DIGEST_LENGTHS.get(hash_algorithm) != len(message_imprint):
            raise ValueError(f"not a {hash_algorithm} digest: {len(message_imprint)} bytes")
        now = self._clock().astimezone(dt.UTC)
        tst_info = _der(
            _SEQUENCE,
            self._tst_policy
            + _der(_SEQUENCE, self._imprint_algorithms[hash_algorithm] + _der(_OCTET_STRING, message_imprint))
            # Random, not a counter: unique across signer processes and restarts without shared state.
            + core.Integer(1 + secrets.randbits(127)).dump()
            + core.GeneralizedTime(now.replace(microsecond=now.microsecond // 1000 * 1000)).dump()
            + self._tst_accuracy
            + (core.Integer(nonce).dump() if nonce is not None else b"")
            + self._tst_tsa,
        )
        message_digest = _der(
            _SEQUENCE,
            self._message_digest_type + _der(_SET, _der(_OCTET_STRING, hashlib.sha256(tst_info).digest())),
        )
        # DER orders a SET OF by the encodings of its members.
        attributes = b"".join(
            sorted((self._content_type_attribute, message_digest, self._signing_certificate_attribute))
        )
        signature = self._identity.sign(_der(_SET, attributes))
        signer_info = _der(
            _SEQUENCE,
            self._signer_info_head
            + _der(0xA0, attributes)  # signedAttrs [0] IMPLICIT
            + self._signature_algorithm
            + _der(_OCTET_STRING, signature),
        )
        encapsulated = _der(_SEQUENCE, self._tst_info_type + _der(0xA0, _der(_OCTET_STRING, tst_info)))
        signed_data = _der(
            _SEQUENCE,
            self._signed_data_head
            + encapsulated
            # RFC 3161 2.4.1: with certReq false the certificates field must be absent.
            + (self._certificates if include_certificates else b"")
            + _der(_SET, signer_info),
        )
        return _der(_SEQUENCE, _SIGNED_DATA_TYPE + _der(0xA0, signed_data))


_SEQUENCE = 0x30
_SET = 0x31
_OCTET_STRING = 0x04
_SIGNED_DATA_TYPE = cms.ContentType("signed_data").dump()


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def _rejection(failure: str, text: str) -> bytes:
    return TimeStampResp(
        {
            "status": {
                "status": "rejection",
                "status_string": [text],
                "fail_info": tsp.PKIFailureInfo({failure}),
            }
        }
    ).dump()


def _read_request(request_der: bytes, policy: core.ObjectIdentifier) -> tuple[bytes, str, int | None, bool]:
    try:
        request = tsp.TimeStampReq.load(request_der, strict=True)
        version = request["version"].native
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        digest = imprint["hashed_message"].native
        requested_policy = request["req_policy"]
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        has_extensions = bool(request["extensions"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise _Rejection("bad_data_format", "the request is not a DER TimeStampReq") from exc
    if version != "v1":
        raise _Rejection("bad_request", "only version 1 requests are supported")
    if algorithm not in _DIGEST_LENGTHS:
        raise _Rejection("bad_alg", f"unsupported hash algorithm {algorithm}; use SHA-256")
    if len(digest) != _DIGEST_LENGTHS[algorithm]:
        raise _Rejection("bad_data_format", f"the message imprint is not a {algorithm} digest")
    if requested_policy.native is not None and requested_policy.dotted != policy.dotted:
        raise _Rejection("unaccepted_policy", f"this authority only issues under policy {policy.dotted}")
    if has_extensions:
        raise _Rejection("unaccepted_extensions", "request extensions are not supported")
    return digest, algorithm, nonce, cert_req


def _check_tsa_certificate(certificate: x509.Certificate) -> None:
    # RFC 3161 2.3: the TSA certificate has exactly one extended key usage, timeStamping, critical.
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise PkiError(
            f"{certificate.subject.rfc4514_string()} is not a timestamp authority certificate: "
            "it needs the one extendedKeyUsage timeStamping, marked critical"
        )


class LocalTimestamper:
    """Timestamps in-process with our own authority: no network hop, no nonce needed."""

    def __init__(self, authority: TimestampAuthority) -> None:
        self._authority = authority

    def timestamp(self, data: bytes) -> bytes:
        return self._authority.issue(hashlib.sha256(data).digest())
