"""AuthService over a real grpc.aio server on a loopback port, called through the generated stub."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from emeterai.v1 import accounts_pb2, auth_service_pb2, auth_service_pb2_grpc
from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.keys import Keyring
from services.auth.notifiers import DevOutboxNotifier
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.common.errors import RETRY_AFTER_TRAILER, Exhausted
from services.common.interceptors import ErrorInterceptor
from services.common.settings import AuthSettings
from services.common.tokens import StaticKeys, TokenVerifier
from services.gateway.upstream import upstream
from tests.conftest import FakeClock

from .conftest import SERVICE_SECRET

if TYPE_CHECKING:
    # Exists only in the .pyi: the typed face of AuthServiceStub over an aio channel.
    from emeterai.v1.auth_service_pb2_grpc import AuthServiceAsyncStub as Stub


@asynccontextmanager
async def serving_channel(domain: AuthDomain) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to AuthService on a loopback port; the server stops when the block ends, the
    channel only after it."""
    server = grpc.aio.server(interceptors=[ErrorInterceptor(AUTH_STATUS_CODES)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(domain), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await server.stop(None)
        await channel.close()


@asynccontextmanager
async def serving(domain: AuthDomain) -> AsyncIterator[Stub]:
    async with serving_channel(domain) as channel:
        yield auth_service_pb2_grpc.AuthServiceStub(channel)


@pytest.fixture
async def stub(domain: AuthDomain) -> AsyncIterator[Stub]:
    async with serving(domain) as stub:
        yield stub


async def _code(stub: Stub, phone: str) -> str:
    outbox = await stub.ListDevOutbox(auth_service_pb2.ListDevOutboxRequest(phone=phone))
    match = re.search(r"\b(\d{6})\b", outbox.messages[0].body)
    assert match
    return match.group(1)


async def test_sign_in_refresh_and_sign_out(stub: Stub, settings: AuthSettings) -> None:
    sent = await stub.RequestOtp(auth_service_pb2.RequestOtpRequest(phone="0812 3456 7890"))
    assert (sent.phone, sent.expires_in_seconds, sent.resend_after_seconds) == ("+6281234567890", 300, 60)
    outbox = await stub.ListDevOutbox(auth_service_pb2.ListDevOutboxRequest(phone="081234567890"))
    assert outbox.messages[0].channel == "whatsapp" and outbox.messages[0].sent_at.seconds > 0

    verified = await stub.VerifyOtp(
        auth_service_pb2.VerifyOtpRequest(phone=sent.phone, code=await _code(stub, sent.phone))
    )
    assert verified.created
    assert verified.account.kind == accounts_pb2.ACCOUNT_KIND_RETAIL
    assert verified.tokens.token_type == "Bearer"

    # The verifier every other service runs accepts the token against the published keys.
    jwks = await stub.GetJwks(auth_service_pb2.GetJwksRequest())
    keys = StaticKeys([{"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid} for k in jwks.keys])
    verifier = TokenVerifier(keys, settings.token_issuer, settings.token_audience)
    principal = await verifier.verify(verified.tokens.access_token)
    assert (principal.account_id, principal.kind) == (verified.account.account_id, "retail")

    renewed = await stub.RefreshToken(
        auth_service_pb2.RefreshTokenRequest(refresh_token=verified.tokens.refresh_token)
    )
    await stub.RevokeToken(
        auth_service_pb2.RevokeTokenRequest(
            refresh_token=renewed.tokens.refresh_token, access_token=renewed.tokens.access_token
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RefreshToken(
            auth_service_pb2.RefreshTokenRequest(refresh_token=renewed.tokens.refresh_token)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    found = await stub.GetAccount(auth_service_pb2.GetAccountRequest(account_id=verified.account.account_id))
    assert found.account.phone == "+6281234567890"


async def test_domain_errors_arrive_as_statuses(stub: Stub) -> None:
    cases = [
        (
            stub.RequestOtp,
            auth_service_pb2.RequestOtpRequest(phone="021-5551234"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            stub.VerifyOtp,
            auth_service_pb2.VerifyOtpRequest(phone="081234567890", code="000000"),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            stub.GetAccount,
            auth_service_pb2.GetAccountRequest(account_id="acc_none"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            stub.IssueServiceToken,
            auth_service_pb2.IssueServiceTokenRequest(service_name="gateway", service_secret="guess"),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ]
    for method, request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await method(request)
        assert failed.value.code() == code, request
        assert failed.value.details()

    await stub.RequestOtp(auth_service_pb2.RequestOtpRequest(phone="081234567890"))
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await stub.RequestOtp(auth_service_pb2.RequestOtpRequest(phone="081234567890"))
    assert early.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "60 seconds" in early.value.details()
    # The wait travels as a trailer, and the gateway turns it into its Exhausted error (HTTP 429
    # with that Retry-After).
    assert (RETRY_AFTER_TRAILER, "60") in tuple(early.value.trailing_metadata() or ())
    with pytest.raises(Exhausted) as mapped:
        await upstream(stub.RequestOtp(auth_service_pb2.RequestOtpRequest(phone="081234567890")))
    assert mapped.value.retry_after_s == 60


async def test_distributors_customers_and_pin(stub: Stub) -> None:
    created = await stub.CreateDistributor(
        auth_service_pb2.CreateDistributorRequest(display_name="PT Contoh", scopes=["orders"])
    )
    client_id = created.credential.client_id
    issued = await stub.IssueClientToken(
        auth_service_pb2.IssueClientTokenRequest(client_id=client_id, client_secret=created.client_secret)
    )
    assert issued.token_type == "Bearer" and issued.expires_in_seconds == 900
    rotated = await stub.RotateDistributorSecret(
        auth_service_pb2.RotateDistributorSecretRequest(client_id=client_id)
    )
    assert rotated.client_secret != created.client_secret
    # The webhook secret comes with the credential and only changes when rotated itself.
    parent = created.credential.account_id
    assert created.webhook_secret
    kept = await stub.GetWebhookSecret(auth_service_pb2.GetWebhookSecretRequest(account_id=parent))
    assert kept.webhook_secret == created.webhook_secret
    renewed = await stub.RotateWebhookSecret(auth_service_pb2.RotateWebhookSecretRequest(account_id=parent))
    assert renewed.webhook_secret not in ("", created.webhook_secret)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetWebhookSecret(auth_service_pb2.GetWebhookSecretRequest(account_id="acc_nobody"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    request = auth_service_pb2.CreateSubAccountRequest(
        parent_account_id=parent, display_name="Toko Maju", external_ref="c-1"
    )
    child = (await stub.CreateSubAccount(request)).account
    assert (await stub.CreateSubAccount(request)).account.account_id == child.account_id
    assert child.kind == accounts_pb2.ACCOUNT_KIND_DISTRIBUTOR_CUSTOMER and child.parent_account_id == parent
    listed = await stub.ListSubAccounts(auth_service_pb2.ListSubAccountsRequest(parent_account_id=parent))
    assert [a.account_id for a in listed.accounts] == [child.account_id] and not listed.next_page_token

    await stub.SetStampingPin(
        auth_service_pb2.SetStampingPinRequest(account_id=child.account_id, pin="482913")
    )
    checked = await stub.VerifyStampingPin(
        auth_service_pb2.VerifyStampingPinRequest(account_id=child.account_id, pin="482910")
    )
    assert (checked.valid, checked.attempts_left) == (False, 4)

    revoked = await stub.RevokeDistributor(auth_service_pb2.RevokeDistributorRequest(client_id=client_id))
    assert revoked.credential.HasField("revoked_at")
    listed_clients = await stub.ListDistributors(auth_service_pb2.ListDistributorsRequest())
    assert [c.client_id for c in listed_clients.credentials] == [client_id]

    service = await stub.IssueServiceToken(
        auth_service_pb2.IssueServiceTokenRequest(service_name="gateway", service_secret=SERVICE_SECRET)
    )
    assert service.access_token


async def test_dev_outbox_is_closed_in_production(
    tmp_path: Path, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> None:
    production = AuthSettings(mode="production", data_dir=tmp_path, service_secret=SERVICE_SECRET)
    # Handed in explicitly: from settings alone, production refuses the outbox before it starts.
    outbox = DevOutboxNotifier(engine, clock)
    domain = build_auth_domain(
        production, engine, keyring, notifier=outbox, clock=clock, password_hasher=hasher
    )
    async with serving(domain) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as closed:
            await stub.ListDevOutbox(auth_service_pb2.ListDevOutboxRequest(phone="081234567890"))
    assert closed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
