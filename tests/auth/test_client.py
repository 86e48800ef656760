"""BatchingAuthStub against a real AuthService on 127.0.0.1: concurrent PIN checks travel together
in VerifyStampingPins calls and each answers exactly as the single call would, failures included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth import client
from services.auth.client import BatchingAuthStub
from services.auth.domain import AuthDomain
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.common.interceptors import ErrorInterceptor
from tests.batch_calls import count_batches
from tests.conftest import free_port

from .conftest import last_code
from .test_servicer import serving_channel

pb = auth_service_pb2
PIN = "482913"


class CountingStub(auth_service_pb2_grpc.AuthServiceStub):
    """The generated stub, counting the VerifyStampingPins calls it makes and their checks."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.batches = count_batches(self, "VerifyStampingPins", "checks")


@pytest.fixture
async def stub(domain: AuthDomain) -> AsyncIterator[CountingStub]:
    async with serving_channel(domain) as channel:
        yield CountingStub(channel)


@pytest.fixture
def account_id(domain: AuthDomain) -> str:
    phone = "+6285700004444"
    domain.otp.request_code(phone)
    account_id = domain.otp.verify_code(phone, last_code(domain, phone)).account.account_id
    domain.pins.set_stamping_pin(account_id, PIN)
    return account_id


def check(account_id: str, pin: str) -> pb.VerifyStampingPinRequest:
    return pb.VerifyStampingPinRequest(account_id=account_id, pin=pin)


async def test_concurrent_checks_share_calls_and_answer_like_single_calls(
    stub: CountingStub, account_id: str
) -> None:
    batching = BatchingAuthStub(stub, max_in_flight=1)
    right = await asyncio.gather(*(batching.VerifyStampingPin(check(account_id, PIN)) for _ in range(30)))
    assert {(r.valid, r.attempts_left) for r in right} == {(True, 5)}
    # The first goes at once; the rest wait for it and travel together.
    assert stub.batches == [1, 29]
    # Wrong guesses in one batch still count one after another, and a right PIN after them resets.
    wrong = await asyncio.gather(*(batching.VerifyStampingPin(check(account_id, "111112")) for _ in range(4)))
    assert stub.batches[2:] == [1, 3]
    assert [r.attempts_left for r in wrong] == [4, 3, 2, 1] and not any(r.valid for r in wrong)
    again = await batching.VerifyStampingPin(check(account_id, PIN))
    assert (again.valid, again.attempts_left) == (True, 5)
    # Other methods are the plain stub's.
    account = await batching.GetAccount(pb.GetAccountRequest(account_id=account_id))
    assert account.account.stamping_pin_set


@pytest.mark.parametrize(
    ("account", "pin", "code"),
    [
        ("acc_nobody", PIN, grpc.StatusCode.NOT_FOUND),
        ("", "12ab", grpc.StatusCode.INVALID_ARGUMENT),
        ("without-pin", PIN, grpc.StatusCode.FAILED_PRECONDITION),
    ],
    ids=["unknown account", "not a PIN", "no PIN set"],
)
async def test_a_failed_check_raises_what_the_single_call_would(
    stub: CountingStub, domain: AuthDomain, account_id: str, account: str, pin: str, code: grpc.StatusCode
) -> None:
    if account == "without-pin":
        phone = "+6285700005555"
        domain.otp.request_code(phone)
        account = domain.otp.verify_code(phone, last_code(domain, phone)).account.account_id
    alone = await asyncio.gather(
        stub.VerifyStampingPin(check(account or account_id, pin)), return_exceptions=True
    )
    batching = BatchingAuthStub(stub, max_in_flight=1)
    # A failing check does not fail the others that travel with it: the first check goes alone,
    # the failing one and a right one wait for it and travel together.
    together = await asyncio.gather(
        batching.VerifyStampingPin(check(account_id, PIN)),
        batching.VerifyStampingPin(check(account or account_id, pin)),
        batching.VerifyStampingPin(check(account_id, PIN)),
        return_exceptions=True,
    )
    assert stub.batches == [1, 2]
    for failed in (alone[0], together[1]):
        assert isinstance(failed, grpc.aio.AioRpcError) and failed.code() == code, failed
    assert together[1].details() == alone[0].details()  # type: ignore[union-attr]
    for right in (together[0], together[2]):
        assert isinstance(right, pb.VerifyStampingPinResponse) and right.valid


async def test_a_call_is_bounded(stub: CountingStub, account_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyStampingPins(pb.VerifyStampingPinsRequest(checks=[check(account_id, PIN)] * 1001))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    empty = await stub.VerifyStampingPins(pb.VerifyStampingPinsRequest())
    assert list(empty.results) == []


async def test_checks_fail_with_the_call_when_the_service_is_down(account_id: str) -> None:
    """A batch call that fails as a whole fails each check in it with the call's status."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nothing_listens:
        counting = CountingStub(nothing_listens)
        batching = BatchingAuthStub(counting, max_in_flight=1)
        failed = await asyncio.gather(
            *(batching.VerifyStampingPin(check(account_id, PIN), timeout=5) for _ in range(3)),
            return_exceptions=True,
        )
    assert counting.batches == [1, 2]
    assert all(isinstance(f, grpc.aio.AioRpcError) for f in failed), failed
    assert {f.code() for f in failed} == {grpc.StatusCode.UNAVAILABLE}  # type: ignore[union-attr]


class BeforeBatches(grpc.aio.ServerInterceptor):
    """The auth service as it was before VerifyStampingPins: the method is not there at all, which
    gRPC answers UNIMPLEMENTED."""

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method.endswith("/VerifyStampingPins"):
            return None
        return await continuation(details)


@pytest.fixture
async def auth_before_batches(domain: AuthDomain) -> AsyncIterator[CountingStub]:
    server = grpc.aio.server(interceptors=[BeforeBatches(), ErrorInterceptor(AUTH_STATUS_CODES)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(domain), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield CountingStub(channel)
    finally:
        await server.stop(None)


async def test_checks_go_one_call_each_while_auth_has_no_batch_call(
    auth_before_batches: CountingStub, account_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A rollout that updates the gateway before auth: stamping's PIN checks go on, one call each."""
    counting = auth_before_batches
    batching = BatchingAuthStub(counting, max_in_flight=1)
    answers = await asyncio.gather(
        batching.VerifyStampingPin(check(account_id, PIN)),
        batching.VerifyStampingPin(check(account_id, "111112")),
        batching.VerifyStampingPin(check("acc_nobody", PIN)),
        return_exceptions=True,
    )
    later = await batching.VerifyStampingPin(check(account_id, PIN))
    right, wrong, nobody = answers
    assert isinstance(right, pb.VerifyStampingPinResponse) and right.valid, right
    assert isinstance(wrong, pb.VerifyStampingPinResponse) and wrong.attempts_left == 4, wrong
    assert isinstance(nobody, grpc.aio.AioRpcError) and nobody.code() == grpc.StatusCode.NOT_FOUND
    assert later.valid and later.attempts_left == 5
    # Asked for a batch once, by the first check; the rest went one call each without asking again.
    assert counting.batches == [1]
    assert "no VerifyStampingPins" in caplog.text


async def test_batches_are_tried_again_after_a_while(
    auth_before_batches: CountingStub, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auth service updated since answers in batches again, without restarting the gateway."""
    monkeypatch.setattr(client, "OLD_AUTH_RETRY_S", 0.0)
    batching = BatchingAuthStub(auth_before_batches)
    for _ in range(2):
        assert (await batching.VerifyStampingPin(check(account_id, PIN))).valid
    assert auth_before_batches.batches == [1, 1]
