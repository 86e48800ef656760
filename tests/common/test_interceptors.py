"""The shared interceptors against a real grpc.aio server on loopback, with real signed tokens."""

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from emeterai.v1 import signer_service_pb2, signer_service_pb2_grpc
from services.common.boot import Registration, start_grpc_server
from services.common.errors import (
    BASE_STATUS_CODES,
    RETRY_AFTER_TRAILER,
    Exhausted,
    InvalidInput,
    Unauthenticated,
)
from services.common.interceptors import AccessPolicy, current_principal, server_interceptors
from services.common.tokens import StaticKeys, TokenVerifier

ISSUER, AUDIENCE = "emeterai-auth", "emeterai"
SERVICE = "emeterai.v1.SignerService"


class EchoSigner(signer_service_pb2_grpc.SignerServiceServicer):
    """Tells who called; fails on demand."""

    async def GetSignerInfo(self, request, context):
        principal = current_principal()
        return signer_service_pb2.GetSignerInfoResponse(key_algorithm=f"{principal.kind}:{principal.subject}")

    async def Verify(self, request, context):
        if request.document == b"bad":
            raise InvalidInput("this is not a PDF")
        if request.document == b"busy":
            raise Exhausted("too busy right now", 7)
        raise RuntimeError("database at db-7.internal:5432 is down")


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = key.public_key().public_bytes_raw()
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "kid": kid,
    }


def _with_payload(token: str, **changes: object) -> str:
    """The token with its claims changed and its signature kept: what a forger would send."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _token(key: Ed25519PrivateKey, kid: str = "k1", **claims: object) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service:gateway",
        "kind": "service",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def channel(signing_key: Ed25519PrivateKey) -> AsyncIterator[grpc.aio.Channel]:
    verifier = TokenVerifier(StaticKeys([_jwk(signing_key, "k1")]), ISSUER, AUDIENCE)
    policy = AccessPolicy(default_kinds=frozenset({"service"}))
    server = await start_grpc_server(
        "127.0.0.1:0",
        [Registration(signer_service_pb2_grpc.add_SignerServiceServicer_to_server, EchoSigner(), SERVICE)],
        server_interceptors(BASE_STATUS_CODES, verifier, policy),
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel
    await channel.close()
    await server.stop(0)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> signer_service_pb2_grpc.SignerServiceStub:
    return signer_service_pb2_grpc.SignerServiceStub(channel)


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_valid_service_token_reaches_the_handler(stub, signing_key) -> None:
    reply = await stub.GetSignerInfo(
        signer_service_pb2.GetSignerInfoRequest(), metadata=_auth(_token(signing_key))
    )
    assert reply.key_algorithm == "service:service:gateway"


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda key: "", id="missing"),
        pytest.param(lambda key: "not-a-jwt", id="garbage"),
        pytest.param(lambda key: _token(Ed25519PrivateKey.generate()), id="wrong-key"),
        pytest.param(lambda key: _token(key, kid="unknown"), id="unknown-kid"),
        pytest.param(lambda key: _token(key, exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda key: _token(key, aud="someone-else"), id="wrong-audience"),
        pytest.param(lambda key: _token(key, iss="evil"), id="wrong-issuer"),
        pytest.param(lambda key: _token(key, kind="superuser"), id="unknown-kind"),
        pytest.param(
            lambda key: jwt.encode(
                {"sub": "x", "kind": "service"}, None, algorithm="none", headers={"kid": "k1"}
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda key: _token(key)[:-6] + ("AAAAAA" if not _token(key).endswith("AAAAAA") else "BBBBBB"),
            id="tampered-signature",
        ),
        pytest.param(
            lambda key: _with_payload(_token(key, kind="retail"), kind="service"), id="tampered-payload"
        ),
    ],
)
async def test_bad_tokens_are_unauthenticated(stub, signing_key, make_token) -> None:
    call = stub.GetSignerInfo(
        signer_service_pb2.GetSignerInfoRequest(), metadata=_auth(make_token(signing_key))
    )
    assert await _code(call) == grpc.StatusCode.UNAUTHENTICATED


async def test_retail_token_cannot_call_an_internal_service(stub, signing_key) -> None:
    token = _token(signing_key, sub="acc_123", kind="retail")
    call = stub.GetSignerInfo(signer_service_pb2.GetSignerInfoRequest(), metadata=_auth(token))
    assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED


async def test_domain_error_maps_to_its_status_with_its_message(stub, signing_key) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Verify(
            signer_service_pb2.VerifyRequest(document=b"bad"), metadata=_auth(_token(signing_key))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "this is not a PDF"


async def test_exhausted_carries_the_wait_as_retry_info_and_a_trailer(stub, signing_key) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Verify(
            signer_service_pb2.VerifyRequest(document=b"busy"), metadata=_auth(_token(signing_key))
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.message == "too busy right now"
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds == 7
    assert (RETRY_AFTER_TRAILER, "7") in tuple(caught.value.trailing_metadata())


async def test_unexpected_error_is_internal_and_leaks_nothing(stub, signing_key) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Verify(
            signer_service_pb2.VerifyRequest(document=b"x"), metadata=_auth(_token(signing_key))
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "db-7" not in (caught.value.details() or "")


async def test_health_needs_no_token(channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_verified_token_is_remembered_until_it_expires(signing_key: Ed25519PrivateKey) -> None:
    class CountingKeys(StaticKeys):
        lookups = 0

        async def public_key(self, kid: str):  # type: ignore[no-untyped-def]
            CountingKeys.lookups += 1
            return await super().public_key(kid)

    now = [time.time()]
    verifier = TokenVerifier(CountingKeys([_jwk(signing_key, "k1")]), ISSUER, AUDIENCE, clock=lambda: now[0])
    token = _token(signing_key, exp=int(now[0]) + 60)
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first and CountingKeys.lookups == 1
    # Past its expiry (and the leeway) the cached answer is dropped and the signature checked again.
    now[0] += 60 + 31
    assert await verifier.verify(token) == first and CountingKeys.lookups == 2
    # A tampered copy is a different token: never answered from the cache.
    with pytest.raises(Unauthenticated):
        await verifier.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))


async def test_a_streaming_handler_that_writes_its_answers_passes_through_the_chain(channel) -> None:
    # grpc.health.v1's Watch answers with context.write() instead of yielding.
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
