"""Forged and misused tokens are refused everywhere: the HTTP API, the distributor gRPC API and the
internal services.

The forgeries start from what an attacker could hold: a real token of their own, the public key
from the JWKS, a key of their own. Several are signed with the stack's real key but carry claims
no issued token has (expired, another issuer or audience, an unknown kind): the verifier must check
the claims, not just the signature. A control proves that the forging helper makes tokens the
verifier accepts when nothing is wrong with them, so every refusal below is about the one flaw.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from emeterai.v1 import distributor_service_pb2 as dpb
from emeterai.v1 import quota_service_pb2, quota_service_pb2_grpc
from services.auth.keys import Keyring
from tests.e2e.local_stack import one_time_code
from tests.hostile import Hostile, rpc_code

pytestmark = pytest.mark.e2e


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


class Forger:
    """Tokens like the auth service's, with whatever the test changes."""

    def __init__(self, hostile: Hostile) -> None:
        self.key = Keyring.load(hostile.stack.data_dir / "jwt", create_if_empty=False).current
        self.account_id = jwt.decode(
            hostile.cast.owner["Authorization"].removeprefix("Bearer "), options={"verify_signature": False}
        )["sub"]

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": "emeterai-auth",
            "aud": "emeterai",
            "sub": self.account_id,
            "kind": "retail",
            "scope": "",
            "jti": f"forged-{time.monotonic_ns()}",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Ed25519PrivateKey | None = None, **headers: Any) -> str:
        return jwt.encode(
            claims, key or self.key.private_key, algorithm="EdDSA", headers={"kid": self.key.kid, **headers}
        )

    def public_key_raw(self) -> bytes:
        return self.key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_key_pem(self) -> bytes:
        return self.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    signing_input = f"{_b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def eddsa(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Signed by hand, for headers PyJWT will not write."""
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def unsigned(claims: dict[str, Any], kid: str, alg: str = "none") -> str:
    return f"{_b64json({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{_b64json(claims)}."


def tampered(token: str, **changes: Any) -> str:
    """A real token whose payload is changed and whose signature is kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64json(claims)}.{signature}"


def forgeries(forger: Forger, real: str) -> dict[str, str]:
    kid = forger.key.kid
    stranger = Ed25519PrivateKey.generate()
    now = int(time.time())
    return {
        "alg none": unsigned(forger.claims(), kid),
        "alg None, capitalised": unsigned(forger.claims(), kid, alg="None"),
        "HS256 keyed with the raw public key": hs256(forger.claims(), forger.public_key_raw(), kid),
        "HS256 keyed with the PEM public key": hs256(forger.claims(), forger.public_key_pem(), kid),
        "HS256 keyed with the JWKS x value": hs256(
            forger.claims(), _b64(forger.public_key_raw()).encode(), kid
        ),
        "signature stripped": real.rsplit(".", 1)[0] + ".",
        "expired": forger.sign(forger.claims(iat=now - 7200, exp=now - 3600)),
        "issued in the future": forger.sign(forger.claims(iat=now + 3600, exp=now + 7200)),
        "wrong issuer": forger.sign(forger.claims(iss="https://attacker.example")),
        "wrong audience": forger.sign(forger.claims(aud="another-service")),
        "no expiry": forger.sign(forger.claims(exp=None)),
        "no token id": forger.sign(forger.claims(jti=None)),
        "unknown kind": forger.sign(forger.claims(kind="superuser")),
        "unknown kid": jwt.encode(forger.claims(), stranger, algorithm="EdDSA", headers={"kid": "not-a-kid"}),
        "real kid, another key": forger.sign(forger.claims(), key=stranger),
        "another key, embedded as jwk": forger.sign(
            forger.claims(),
            key=stranger,
            jwk={
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64(
                    stranger.public_key().public_bytes(
                        serialization.Encoding.Raw, serialization.PublicFormat.Raw
                    )
                ),
            },
        ),
        "kid not a string": eddsa({"alg": "EdDSA", "kid": 7}, forger.claims(), forger.key.private_key),
        "payload tampered: another account": tampered(real, sub="acc_someone_else"),
        "payload tampered: operator": tampered(real, kind="operator"),
        "payload tampered: later expiry": tampered(real, exp=now + 10 * 365 * 86400),
        "garbage": "not.a.token",
        "empty segments": "..",
    }


@pytest.fixture(scope="module")
def forger(hostile: Hostile) -> Forger:
    return Forger(hostile)


def test_the_forger_makes_tokens_the_verifier_accepts(hostile: Hostile, forger: Forger) -> None:
    # The control: a token of the forger with nothing wrong in it is taken as the owner's.
    token = forger.sign(forger.claims())
    response = hostile.http.get("/v1/balance", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == hostile.balance(hostile.cast.owner)


FORGERIES = [
        "alg none", "alg None, capitalised", "HS256 keyed with the raw public key",
        "HS256 keyed with the PEM public key", "HS256 keyed with the JWKS x value", "signature stripped",
        "expired", "issued in the future", "wrong issuer", "wrong audience", "no expiry", "no token id",
        "unknown kind", "unknown kid", "real kid, another key", "another key, embedded as jwk",
        "kid not a string", "payload tampered: another account", "payload tampered: operator",
        "payload tampered: later expiry", "garbage", "empty segments",
]  # fmt: skip


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_tokens_are_refused_everywhere(hostile: Hostile, forger: Forger, name: str) -> None:
    real = hostile.cast.owner["Authorization"].removeprefix("Bearer ")
    token = forgeries(forger, real)[name]
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/v1/balance", "/v1/stamps", "/v1/admin/audit"):
        response = hostile.http.get(path, headers=bearer)
        assert response.status_code == 401, (path, response.status_code, response.text)
    metadata = (("authorization", f"Bearer {token}"),)
    api = hostile.distributor_api
    code = rpc_code(lambda: api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # The same forgery claiming to be a service, at the ledger itself.
    as_service = {"payload tampered: operator": tampered(real, kind="service", sub="gateway")}.get(
        name, token
    )
    with grpc.insecure_channel(hostile.internal_address("quota")) as channel:
        quota = quota_service_pb2_grpc.QuotaServiceStub(channel)
        code = rpc_code(
            lambda: quota.GetBalance(
                quota_service_pb2.GetBalanceRequest(account_id=forger.account_id),
                metadata=(("authorization", f"Bearer {as_service}"),),
                timeout=30,
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_the_whole_token_set_is_tested(forger: Forger) -> None:
    assert set(FORGERIES) == set(forgeries(forger, forger.sign(forger.claims())))


def _refresh_token(hostile: Hostile) -> str:
    sent = hostile.http.post("/v1/auth/otp", json={"phone": "0819-8000-0001"})
    assert sent.status_code == 200, sent.text
    code = one_time_code(hostile.http, sent.json()["phone"])
    tokens = hostile.http.post("/v1/auth/token", json={"phone": "0819-8000-0001", "code": code}).json()
    return tokens["refresh_token"]


def test_tokens_of_another_kind_are_refused(hostile: Hostile, forger: Forger) -> None:
    cast = hostile.cast
    http = hostile.http

    def http_status(token: str, path: str = "/v1/balance") -> int:
        return http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code

    # A refresh token is opaque, never an access token.
    assert http_status(_refresh_token(hostile)) == 401
    # A distributor's and a service's tokens are real, but not for the retail API.
    assert http_status(cast.distributor.token) == 403
    assert http_status(cast.service_token) == 403
    # Retail and operator tokens are not for the operators' routes and the retail ones respectively.
    assert http_status(cast.owner["Authorization"].removeprefix("Bearer "), "/v1/admin/audit") == 403
    assert http_status(cast.operator["Authorization"].removeprefix("Bearer ")) == 403

    api = hostile.distributor_api
    balance = dpb.DistributorServiceGetBalanceRequest()

    def distributor_code(token: str) -> grpc.StatusCode:
        return rpc_code(lambda: api.GetBalance(balance, metadata=(("authorization", f"Bearer {token}"),)))

    assert (
        distributor_code(cast.owner["Authorization"].removeprefix("Bearer "))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert distributor_code(cast.service_token) == grpc.StatusCode.PERMISSION_DENIED
    # A real retail token whose kind was rewritten to distributor loses its signature.
    forged = tampered(cast.owner["Authorization"].removeprefix("Bearer "), kind="distributor")
    assert distributor_code(forged) == grpc.StatusCode.UNAUTHENTICATED

    # Users' tokens never reach the internal services, whoever they are.
    with grpc.insecure_channel(hostile.internal_address("quota")) as channel:
        quota = quota_service_pb2_grpc.QuotaServiceStub(channel)
        for token in (
            cast.owner["Authorization"].removeprefix("Bearer "),
            cast.operator["Authorization"].removeprefix("Bearer "),
            cast.distributor.token,
        ):
            code = rpc_code(
                lambda t=token: quota.GetBalance(
                    quota_service_pb2.GetBalanceRequest(account_id=forger.account_id),
                    metadata=(("authorization", f"Bearer {t}"),),
                    timeout=30,
                )
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
