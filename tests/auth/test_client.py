"""BatchingAuthStub against a real AuthService on 127.0.0.1: concurrent PIN checks travel together
in VerifyStampingPins calls and each answers exactly as the single call would, failures included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.client import BatchingAuthStub
from services.auth.domain import AuthDomain
from tests.conftest import free_port

from .conftest import last_code
from .test_servicer import serving_channel

pb = auth_service_pb2
PIN = "482913"


class CountingStub(auth_service_pb2_grpc.AuthServiceStub):
    """The generated stub, counting the VerifyStampingPins calls it makes and their checks."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.batches: list[int] = []
        verify = self.VerifyStampingPins

        def counted(request: pb.VerifyStampingPinsRequest, **kwargs: object):  # type: ignore[no-untyped-def]
            self.batches.append(len(request.checks))
            return verify(request, **kwargs)

        self.VerifyStampingPins = counted  # type: ignore[method-assign]


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
    assert sum(stub.batches) == 30 and len(stub.batches) < 30
    # Wrong guesses in one batch still count one after another, and a right PIN after them resets.
    wrong = await asyncio.gather(*(batching.VerifyStampingPin(check(account_id, "111112")) for _ in range(3)))
    assert sorted(r.attempts_left for r in wrong) == [2, 3, 4] and not any(r.valid for r in wrong)
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
    batching = BatchingAuthStub(stub)
    alone = await asyncio.gather(
        stub.VerifyStampingPin(check(account or account_id, pin)), return_exceptions=True
    )
    # A failing check does not fail the others that travel with it.
    together = await asyncio.gather(
        batching.VerifyStampingPin(check(account or account_id, pin)),
        batching.VerifyStampingPin(check(account_id, PIN)),
        return_exceptions=True,
    )
    for failed in (alone[0], together[0]):
        assert isinstance(failed, grpc.aio.AioRpcError) and failed.code() == code, failed
    assert together[0].details() == alone[0].details()  # type: ignore[union-attr]
    assert isinstance(together[1], pb.VerifyStampingPinResponse) and together[1].valid


async def test_a_call_is_bounded(stub: CountingStub, account_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyStampingPins(pb.VerifyStampingPinsRequest(checks=[check(account_id, PIN)] * 1001))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    empty = await stub.VerifyStampingPins(pb.VerifyStampingPinsRequest())
    assert list(empty.results) == []


async def test_checks_fail_with_the_call_when_the_service_is_down(account_id: str) -> None:
    """A batch call that fails as a whole fails each check in it with the call's status."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nothing_listens:
        batching = BatchingAuthStub(auth_service_pb2_grpc.AuthServiceStub(nothing_listens))
        failed = await asyncio.gather(
            *(batching.VerifyStampingPin(check(account_id, PIN), timeout=5) for _ in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(f, grpc.aio.AioRpcError) for f in failed), failed
    assert {f.code() for f in failed} == {grpc.StatusCode.UNAVAILABLE}  # type: ignore[union-attr]
