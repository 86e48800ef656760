"""Asking a timestamp authority over HTTP (RFC 3161 section 3.4): ours, or an external one.

The answer is checked before it goes into a signature: granted, a SignedData around a TSTInfo,
for our digest and our nonce, signed by the certificate it names. Whether that certificate is
trusted is for the verifier to decide, as for any signature.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

import httpx
from asn1crypto import algos, cms, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from services.signer.tsa import TimestampFailed, TimeStampResp

log = logging.getLogger(__name__)

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


class HttpTimestampClient:
    """`timestamp(data)` asks the TSA at `url` for a token over SHA-256(data).

    One client keeps one connection pool; it is safe to share between threads.
    """

    def __init__(self, url: str, timeout: float = 10.0, *, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self._client = httpx.Client(
            timeout=timeout, headers={"Accept": REPLY_TYPE, **(headers or {})}, follow_redirects=False
        )

    def timestamp(self, data: bytes) -> bytes:
        """The DER TimeStampToken (ContentInfo) over SHA-256(`data`); raises TimestampFailed."""
        digest = hashlib.sha256(data).digest()
        nonce = secrets.randbits(63)
        request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
        try:
            answer = self._client.post(self.url, content=request, headers={"Content-Type": QUERY_TYPE})
        except httpx.TimeoutException as exc:
            raise self._failed("the timestamp authority did not answer in time", repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise self._failed("the timestamp authority cannot be reached", repr(exc)) from exc
        if answer.status_code != 200:
            raise self._failed(
                f"the timestamp authority answered HTTP {answer.status_code}", answer.text[:200]
            )
        content_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != REPLY_TYPE:
            raise self._failed("the timestamp authority did not send a timestamp reply", content_type)
        try:
            return token_from_response(answer.content, digest, nonce)
        except TimestampFailed as exc:
            raise self._failed(exc.message, exc.detail) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTimestampClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _failed(self, message: str, detail: str) -> TimestampFailed:
        log.warning("timestamp request to %s failed: %s (%s)", self.url, message, detail)
        return TimestampFailed(message, f"{self.url}: {detail}")


def token_from_response(response_der: bytes, digest: bytes, nonce: int | None) -> bytes:
    """The token in a DER TimeStampResp, once it is granted and for this SHA-256 `digest` and `nonce`."""
    try:
        response = TimeStampResp.load(response_der, strict=True)
        status = response["status"]
        granted = status["status"].native in ("granted", "granted_with_mods")
        if not granted:
            reasons = [*(status["status_string"].native or []), *sorted(status["fail_info"].native or [])]
            raise TimestampFailed(
                "the timestamp authority refused the request" + (f": {'; '.join(reasons)}" if reasons else "")
            )
        token = response["time_stamp_token"]
        if token["content_type"].native != "signed_data":
            raise TimestampFailed("the timestamp authority's token is not a SignedData")
        signed_data = token["content"]
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].native != "tst_info":
            raise TimestampFailed("the timestamp authority's token holds no TSTInfo")
        tst_info_der = encapsulated["content"].contents
        tst_info = tsp.TSTInfo.load(tst_info_der)
        imprint = tst_info["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        hashed = imprint["hashed_message"].native
        received_nonce = tst_info["nonce"].native
        token_der = token.dump()
    except TimestampFailed:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampFailed("the timestamp authority sent an unreadable answer", repr(exc)) from exc
    if algorithm != "sha256" or hashed != digest:
        raise TimestampFailed(
            "the timestamp authority stamped a different document (message imprint mismatch)"
        )
    if nonce is not None and received_nonce != nonce:
        # Not our answer: replayed, or meant for another request.
        raise TimestampFailed("the timestamp authority's answer does not carry our nonce")
    _check_token_signature(signed_data, tst_info_der)
    return token_der


_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _check_token_signature(signed_data: cms.SignedData, tst_info_der: bytes) -> None:
    """The token is signed over this TSTInfo by a certificate it carries; no trust decision here."""
    unusable = TimestampFailed("the timestamp authority's token signature does not verify")
    try:
        (signer_info,) = signed_data["signer_infos"]
        sid = signer_info["sid"].chosen
        certificates = [choice.chosen for choice in signed_data["certificates"] or []]
        if isinstance(sid, cms.IssuerAndSerialNumber):
            matching = [
                c
                for c in certificates
                if c.issuer == sid["issuer"] and c.serial_number == sid["serial_number"].native
            ]
        else:
            matching = [c for c in certificates if c.key_identifier == sid.native]
        if not matching:
            # certReq was false, or the TSA left its certificate out: a verifier must supply it.
            raise TimestampFailed("the timestamp authority's token does not include its certificate")
        certificate = x509.load_der_x509_certificate(matching[0].dump())
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        hash_class = _SIGNATURE_HASHES[digest_name]
        attributes = {
            attribute["type"].native: attribute["values"][0] for attribute in signer_info["signed_attrs"]
        }
        digester = hashes.Hash(hash_class())
        digester.update(tst_info_der)
        if attributes["message_digest"].native != digester.finalize():
            raise unusable
        # What was signed is the attributes as received, with the SET OF tag in place of [0].
        signed = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        _verify(
            certificate,
            signer_info["signature_algorithm"],
            signer_info["signature"].native,
            signed,
            hash_class(),
        )
    except TimestampFailed:
        raise
    except (ValueError, TypeError, KeyError, InvalidSignature) as exc:
        raise unusable from exc


def _verify(
    certificate: x509.Certificate,
    algorithm: algos.SignedDigestAlgorithm,
    signature: bytes,
    data: bytes,
    hash_algorithm: hashes.HashAlgorithm,
) -> None:
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey) and algorithm.signature_algo == "rsassa_pkcs1v15":
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm.signature_algo == "ecdsa":
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        raise ValueError(f"unsupported token signature algorithm {algorithm['algorithm'].native}")
