"""Our RFC 3161 timestamp authority, checked by validators that are not ours: pyHanko and openssl."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext

from services.signer.pki import DevPki, PkiError, SigningIdentity
from services.signer.tsa import DEV_TSA_POLICY_OID, LocalTimestamper, TimestampAuthority, TimeStampResp

from .conftest import require_tool


@pytest.fixture(scope="session")
def authority(dev_pki: DevPki) -> TimestampAuthority:
    return TimestampAuthority(dev_pki.load_tsa_identity())


@pytest.fixture(scope="session")
def rsa_tsa_identity(dev_pki: DevPki) -> SigningIdentity:
    """An RSA-3072 TSA from the test PKI's issuing CA, for the other signature algorithm."""
    issuing_key = serialization.load_pem_private_key(dev_pki.issuing_ca_key_path.read_bytes(), password=None)
    assert isinstance(issuing_key, ec.EllipticCurvePrivateKey)
    _, issuing, root = dev_pki.load_identity().chain
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "RSA Test TSA")]))
        .issuer_name(issuing.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(issuing_key, hashes.SHA256())
    )
    return SigningIdentity(key, (certificate, issuing, root))


def pyhanko_status(token: bytes, data: bytes, roots: list[x509.Certificate]) -> TimestampSignatureStatus:
    """pyHanko's verdict on a token over SHA-256(data), trusting `roots`."""
    context = ValidationContext(
        trust_roots=[
            asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)) for root in roots
        ]
    )
    status = asyncio.run(
        validate_tst_signed_data(
            cms.ContentInfo.load(token)["content"],
            context,
            lambda algorithm: hashlib.new(algorithm, data).digest(),
        )
    )
    return TimestampSignatureStatus(**status)


def tst_info(token: bytes) -> tsp.TSTInfo:
    return cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed


def test_tokens_pass_pyhankos_timestamp_validation(authority: TimestampAuthority, trust_roots: list) -> None:
    token = LocalTimestamper(authority).timestamp(b"a signature value")
    status = pyhanko_status(token, b"a signature value", trust_roots)
    assert status.intact and status.valid and status.trusted
    assert status.signing_cert.subject.native["common_name"] == "e-meterai Dev Timestamp Authority"
    assert not pyhanko_status(token, b"another signature value", trust_roots).intact


def test_an_rsa_tsa_works_too(rsa_tsa_identity: SigningIdentity, trust_roots: list) -> None:
    token = LocalTimestamper(TimestampAuthority(rsa_tsa_identity)).timestamp(b"x")
    status = pyhanko_status(token, b"x", trust_roots)
    assert status.intact and status.valid and status.trusted
    assert status.pkcs7_signature_mechanism == "sha256_rsa"


def test_a_token_under_another_root_is_not_trusted(authority: TimestampAuthority, ecdsa_pki: tuple) -> None:
    _, other_root = ecdsa_pki
    status = pyhanko_status(LocalTimestamper(authority).timestamp(b"x"), b"x", [other_root])
    assert status.intact and status.valid and not status.trusted


def test_the_token_says_what_rfc_3161_asks(dev_pki: DevPki) -> None:
    moment = dt.datetime(2026, 8, 17, 10, 45, 0, 123456, tzinfo=dt.UTC)
    authority = TimestampAuthority(dev_pki.load_tsa_identity(), clock=lambda: moment)
    digest = hashlib.sha256(b"signature").digest()
    token = authority.issue(digest, nonce=0x1234567890ABCDEF)

    info = tst_info(token).native
    assert info["version"] == "v1"
    assert info["policy"] == DEV_TSA_POLICY_OID
    assert info["message_imprint"] == {
        "hash_algorithm": {"algorithm": "sha256", "parameters": None},
        "hashed_message": digest,
    }
    assert info["gen_time"] == moment.replace(microsecond=123000)
    assert info["accuracy"] == {"seconds": 1, "millis": None, "micros": None}
    assert info["nonce"] == 0x1234567890ABCDEF
    assert info["tsa"]["common_name"] == "e-meterai Dev Timestamp Authority"

    signed_data = cms.ContentInfo.load(token)["content"]
    (signer_info,) = signed_data["signer_infos"]
    assert {attribute["type"].native for attribute in signer_info["signed_attrs"]} == {
        "content_type",
        "message_digest",
        "signing_certificate_v2",
    }
    assert len(signed_data["certificates"]) == 3
    # Our hand-joined DER is what asn1crypto would encode.
    assert cms.ContentInfo.load(token).dump(force=True) == token


def test_serial_numbers_do_not_repeat(authority: TimestampAuthority) -> None:
    serials = {tst_info(authority.issue(bytes(32)))["serial_number"].native for _ in range(200)}
    assert len(serials) == 200


def test_refuses_a_certificate_that_is_not_a_tsas(identity: SigningIdentity) -> None:
    with pytest.raises(PkiError, match="timeStamping, marked critical"):
        TimestampAuthority(identity)


# --- requests and responses, with openssl ts as the client and the verifier ----------------------


def openssl_query(tmp_path: Path, data: bytes, *options: str) -> Path:
    (tmp_path / "data.bin").write_bytes(data)
    query = tmp_path / "query.tsq"
    subprocess.run(
        [
            require_tool("openssl"),
            "ts",
            "-query",
            "-data",
            str(tmp_path / "data.bin"),
            "-out",
            str(query),
            *options,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return query


def openssl_verify(dev_pki: DevPki, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require_tool("openssl"),
            "ts",
            "-verify",
            *arguments,
            "-CAfile",
            str(dev_pki.root_path),
            "-untrusted",
            str(dev_pki.tsa_chain_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("cert_req", [True, False])
def test_openssl_verifies_answers_to_its_own_queries(
    authority: TimestampAuthority, dev_pki: DevPki, tmp_path: Path, cert_req: bool
) -> None:
    query = openssl_query(tmp_path, b"signature bytes", "-sha256", *(["-cert"] if cert_req else []))
    reply = tmp_path / "reply.tsr"
    reply.write_bytes(authority.respond(query.read_bytes()))

    # -queryfile checks the imprint, the nonce and the policy against the query.
    result = openssl_verify(dev_pki, "-queryfile", str(query), "-in", str(reply))
    assert "Verification: OK" in result.stdout, result.stderr
    token = TimeStampResp.load(reply.read_bytes())["time_stamp_token"]
    # RFC 3161 2.4.1: certificates only when asked for.
    assert bool(token["content"]["certificates"].native) is cert_req


def test_openssl_verifies_a_local_token_against_the_data(
    authority: TimestampAuthority, dev_pki: DevPki, tmp_path: Path
) -> None:
    (tmp_path / "signature.bin").write_bytes(b"signature value")
    (tmp_path / "token.der").write_bytes(LocalTimestamper(authority).timestamp(b"signature value"))
    result = openssl_verify(
        dev_pki, "-data", str(tmp_path / "signature.bin"), "-in", str(tmp_path / "token.der"), "-token_in"
    )
    assert "Verification: OK" in result.stdout, result.stderr


def test_sha512_queries_are_answered_in_kind(authority: TimestampAuthority, tmp_path: Path) -> None:
    query = openssl_query(tmp_path, b"data", "-sha512")
    response = TimeStampResp.load(authority.respond(query.read_bytes()))
    assert response["status"]["status"].native == "granted"
    imprint = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed[
        "message_imprint"
    ]
    assert imprint["hashed_message"].native == hashlib.sha512(b"data").digest()


def rejection(authority: TimestampAuthority, request: bytes) -> tuple[set[str], list[str]]:
    status = TimeStampResp.load(authority.respond(request))["status"]
    assert status["status"].native == "rejection"
    return status["fail_info"].native, status["status_string"].native


def request(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(32)},
        "cert_req": True,
    }
    return tsp.TimeStampReq(fields | changes).dump()


def test_refuses_what_it_cannot_stamp_with_the_rfc_3161_reason(authority: TimestampAuthority) -> None:
    assert rejection(authority, b"not DER at all")[0] == {"bad_data_format"}
    assert rejection(authority, request() + b"trailing")[0] == {"bad_data_format"}
    assert rejection(
        authority,
        request(message_imprint={"hash_algorithm": {"algorithm": "sha1"}, "hashed_message": bytes(20)}),
    ) == ({"bad_alg"}, ["unsupported hash algorithm sha1; use SHA-256"])
    assert rejection(
        authority,
        request(message_imprint={"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(20)}),
    )[0] == {"bad_data_format"}
    assert rejection(authority, request(req_policy="1.2.3.4"))[0] == {"unaccepted_policy"}
    extension = {"extn_id": "1.2.3.4", "critical": False, "extn_value": b"\x05\x00"}
    assert rejection(authority, request(extensions=[extension]))[0] == {"unaccepted_extensions"}
    # Our own policy, asked for by name, is fine.
    granted = TimeStampResp.load(authority.respond(request(req_policy=DEV_TSA_POLICY_OID)))
    assert granted["status"]["status"].native == "granted"


def test_a_failing_key_becomes_a_system_failure_not_a_crash(dev_pki: DevPki) -> None:
    tsa = dev_pki.load_tsa_identity()

    class BrokenKey:
        chain = tsa.chain
        certificate = tsa.certificate
        key_algorithm = tsa.key_algorithm

        def sign(self, data: bytes) -> bytes:
            raise RuntimeError("token removed")

    failure, text = rejection(TimestampAuthority(BrokenKey()), request())
    assert failure == {"system_failure"}
    assert text == ["the timestamp authority could not sign"]
