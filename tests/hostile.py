"""One running stack for the hostile-input and security tests (tests/fuzz, tests/security), the
cast of callers that use it, and the check every error they provoke must pass.

Starting the stack costs tens of seconds on a small machine, so the first test that asks for it
starts it and every later one, in either folder, reuses it; it stops when the session ends. The
cast (retail users, an operator, distributors, a service identity) is made once, before any fuzzer
runs, so a fuzzer spending sign-in limits cannot lock the other tests out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import httpx
import pytest
from google.protobuf.message import Message

from emeterai.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    common_pb2,
    distributor_service_pb2_grpc,
)
from emeterai.v1 import distributor_service_pb2 as dpb
from services.stack import read_stack_env
from tests.conftest import require_corpus
from tests.e2e.local_stack import RunningStack, one_time_code, running_stack

T = TypeVar("T")

# Small limits, so oversized and slow uploads are quick to provoke; generous rate limits, so the
# tests' own traffic is never what they measure.
UPLOAD_LIMIT = 1024 * 1024
HTTP_HEADER_TIMEOUT_S = 2.0
HTTP_BODY_TIMEOUT_S = 2.0
ENVIRONMENT = {
    "EMETERAI_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    "EMETERAI_HTTP_HEADER_TIMEOUT_S": str(HTTP_HEADER_TIMEOUT_S),
    "EMETERAI_HTTP_BODY_TIMEOUT_S": str(HTTP_BODY_TIMEOUT_S),
    "EMETERAI_SIGNER_DOCUMENT_TIMEOUT_S": "15",
    "EMETERAI_RETAIL_STAMPS_PER_S": "100",
    "EMETERAI_RETAIL_STAMP_BURST": "1000",
    "EMETERAI_ORDERS_PER_S": "100",
    "EMETERAI_ORDER_BURST": "1000",
    "EMETERAI_OTP_REQUESTS_PER_ADDRESS": "100000",
    "EMETERAI_OTP_VERIFIES_PER_ADDRESS": "100000",
}
PIN = "482915"


def fuzz_examples(ci_default: int) -> int:
    """Examples per fuzz test: a small number in CI, EMETERAI_FUZZ_EXAMPLES for the long run."""
    return int(os.environ.get("EMETERAI_FUZZ_EXAMPLES", ci_default))


# ---------------------------------------------------------------------------------------------
# What no error may say


class LeakCheck:
    """What must never appear in an error a caller sees: the stack's internal addresses and ports,
    its files, stack traces and the names of Python exception classes."""

    def __init__(self, stack: RunningStack) -> None:
        env = read_stack_env(stack.data_dir)
        internal = [env.get("EMETERAI_AUTH_ADDRESS", ""), env.get("EMETERAI_QUOTA_ADDRESS", "")]
        internal += env.get("EMETERAI_SIGNER_ADDRESSES", "").split(",")
        ports = [address.rpartition(":")[2] for address in internal if address]
        self._forbidden = [
            re.compile(r"Traceback|File \"|line \d+, in "),
            re.compile(r"127\.0\.0\.1|localhost|0\.0\.0\.0|::1\b", re.IGNORECASE),
            re.compile(r"\b(?:" + "|".join(map(re.escape, ports)) + r")\b"),
            re.compile(re.escape(str(stack.data_dir.resolve()))),
            re.compile(r"/(?:work|tmp|home|root|usr|opt)/"),
            re.compile(r"\.py\b"),
            re.compile(
                r"\b(?:[A-Z][a-z]+)+(?:Error|Exception)\b|\bStatusCode\.|\b_?InactiveRpcError\b|\bAioRpcError\b"
            ),
        ]
        self.seen = 0

    def problems(self, text: str) -> list[str]:
        return [match.group(0) for pattern in self._forbidden if (match := pattern.search(text))]

    def check(self, where: str, text: str, echoed: Iterable[str] = ()) -> None:
        """`echoed`: what the caller sent, which an error may quote back (an unknown id, say)."""
        self.seen += 1
        found = self.problems(_without_echo(text, echoed))
        assert not found, f"{where} leaks {found}: {text[:500]}"

    def check_response(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            url = response.request.url
            echoed = [urllib.parse.unquote(part) for part in url.path.split("/")]
            echoed += [value for _, value in url.params.multi_items()]
            self.check(
                f"{response.request.method} {url.path} -> {response.status_code}", response.text, echoed
            )

    def check_rpc_error(self, method: str, error: grpc.RpcError, request: Message | None = None) -> None:
        details = error.details() if hasattr(error, "details") else str(error)
        self.check(f"{method} -> {error.code().name}", details or "", message_strings(request))


def _without_echo(text: str, echoed: Iterable[str]) -> str:
    """The text without the caller's own input quoted back: a problem document's `instance` (the
    request's path) and every echoed value long enough not to hide anything else."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        document.pop("instance", None)
        text = json.dumps(document, ensure_ascii=False)
    for value in sorted({v for v in echoed if len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, "").replace(repr(value), "")
    return text


def message_strings(message: Message | None) -> list[str]:
    """Every string a protobuf message carries, nested ones too."""
    if message is None:
        return []
    found: list[str] = []
    for descriptor, value in message.ListFields():
        values = value if descriptor.is_repeated else [value]
        for item in values:
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, Message):
                found += message_strings(item)
    return found


# ---------------------------------------------------------------------------------------------
# The cast


@dataclass
class Distributor:
    client_id: str
    client_secret: str
    account_id: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class Cast:
    """Everyone who calls the stack in these tests, with what each owns."""

    owner: dict[str, str]  # a retail user with quota, a PIN, an order and a stamp
    other: dict[str, str]  # a second retail user who owns nothing
    fuzzed: dict[str, str]  # a retail user for the HTTP fuzzer, with quota and a PIN it does not know
    operator: dict[str, str]
    distributor: Distributor  # with quota, a customer, an order and a stamp
    other_distributor: Distributor
    fuzzed_distributor: Distributor  # for the gRPC fuzzer, with quota
    service_token: str
    owner_order: str
    owner_stamp: str
    owner_serial: str
    distributor_order: str
    distributor_stamp: str
    distributor_customer: str
    distributor_job: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hostile:
    stack: RunningStack
    leaks: LeakCheck
    http: httpx.Client
    channel: grpc.Channel
    cast: Cast

    @property
    def distributor_api(self) -> distributor_service_pb2_grpc.DistributorServiceStub:
        return distributor_service_pb2_grpc.DistributorServiceStub(self.channel)

    def internal_address(self, service: str) -> str:
        env = read_stack_env(self.stack.data_dir)
        if service == "signer":
            return env["EMETERAI_SIGNER_ADDRESSES"].split(",")[0]
        return env[f"EMETERAI_{service.upper()}_ADDRESS"]

    def balance(self, headers: dict[str, str]) -> dict[str, int]:
        response = self.http.get("/v1/balance", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def distributor_balance(self, distributor: Distributor) -> Any:
        return self.distributor_api.GetBalance(
            dpb.DistributorServiceGetBalanceRequest(), metadata=distributor.metadata, timeout=30
        ).balance


_shared: Hostile | None = None


def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """The session's stack and cast, started by the first test that asks."""
    global _shared
    if _shared is None:
        require_corpus()
        data_dir = tmp_path_factory.mktemp("hostile-stack")
        context = running_stack(data_dir, environment=ENVIRONMENT)
        stack = context.__enter__()
        leaks = LeakCheck(stack)
        http = httpx.Client(base_url=stack.http, timeout=60, event_hooks={"response": [leaks.check_response]})
        channel = grpc.insecure_channel(stack.grpc_address)

        def stop() -> None:
            global _shared
            _shared = None
            channel.close()
            http.close()
            context.__exit__(None, None, None)
            shutil.rmtree(data_dir, ignore_errors=True)

        request.config.add_cleanup(stop)
        try:
            cast = _make_cast(stack, http, channel)
        except BaseException:
            stop()
            raise
        _shared = Hostile(stack, leaks, http, channel, cast)
    return _shared


def sign_in(client: httpx.Client, phone: str) -> dict[str, str]:
    sent = client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    code = one_time_code(client, sent.json()["phone"])
    tokens = client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def _funded_user(client: httpx.Client, phone: str, quantity: int) -> tuple[dict[str, str], str]:
    user = sign_in(client, phone)
    order = client.post("/v1/orders", json={"quantity": quantity}, headers=user | {"Idempotency-Key": "fund"})
    assert order.status_code == 201, order.text
    paid = client.post(f"/v1/dev/payments/{order.json()['id']}/pay")
    assert paid.status_code == 200 and paid.json()["webhook_status"] == 200, paid.text
    assert client.put("/v1/account/pin", json={"pin": PIN}, headers=user).status_code == 204
    return user, order.json()["id"]


def _distributor(stack: RunningStack, channel: grpc.Channel, name: str) -> Distributor:
    created = stack.emeterai("distributors", "create", "--name", name)
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    token = api.IssueToken(
        dpb.IssueTokenRequest(client_id=credential["client_id"], client_secret=credential["client_secret"]),
        timeout=30,
    ).access_token
    return Distributor(credential["client_id"], credential["client_secret"], credential["account_id"], token)


def _fund_distributor(
    client: httpx.Client, channel: grpc.Channel, distributor: Distributor, quantity: int
) -> str:
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    order = api.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=quantity, idempotency_key="fund"),
        metadata=distributor.metadata,
        timeout=30,
    ).order
    assert client.post(f"/v1/dev/payments/{order.order_id}/pay").json()["webhook_status"] == 200
    return order.order_id


def service_token(stack: RunningStack) -> str:
    env = read_stack_env(stack.data_dir)
    with grpc.insecure_channel(env["EMETERAI_AUTH_ADDRESS"]) as channel:
        issued = auth_service_pb2_grpc.AuthServiceStub(channel).IssueServiceToken(
            auth_service_pb2.IssueServiceTokenRequest(
                service_name="security-tests", service_secret=env["EMETERAI_SERVICE_SECRET"]
            ),
            timeout=30,
        )
    return issued.access_token


def small_pdf() -> bytes:
    return (require_corpus() / "sf-001-minimal-document.pdf").read_bytes()


def _make_cast(stack: RunningStack, client: httpx.Client, channel: grpc.Channel) -> Cast:
    owner, owner_order = _funded_user(client, "0812-1000-0001", 5)
    stamped = client.post(
        "/v1/stamps",
        data={"pin": PIN, "page": "1"},
        files={"file": ("doc.pdf", small_pdf(), "application/pdf")},
        headers=owner | {"Idempotency-Key": "owner-stamp"},
    )
    assert stamped.status_code == 201, stamped.text
    fuzzed, _ = _funded_user(client, "0812-1000-0003", 3)
    assert stack.emeterai("operators", "add", "0815-1000-0004").returncode == 0
    operator = sign_in(client, "0815-1000-0004")

    distributor = _distributor(stack, channel, "PT Pemilik")
    distributor_order = _fund_distributor(client, channel, distributor, 5)
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    customer = api.CreateCustomer(
        dpb.CreateCustomerRequest(display_name="Toko Pelanggan", external_ref="c-1"),
        metadata=distributor.metadata,
        timeout=30,
    ).account.account_id
    single = api.StampDocument(
        dpb.StampDocumentRequest(
            document=small_pdf(), placement=common_pb2.StampPlacement(page=1), idempotency_key="own-stamp"
        ),
        metadata=distributor.metadata,
        timeout=60,
    )
    job = api.SubmitStampJob(
        dpb.SubmitStampJobRequest(
            documents=[
                dpb.BatchStampRequest(client_ref="x", document=dpb.StampDocumentRequest(document=b"no"))
            ],
            idempotency_key="own-job",
        ),
        metadata=distributor.metadata,
        timeout=30,
    )
    fuzzed_distributor = _distributor(stack, channel, "PT Penguji")
    _fund_distributor(client, channel, fuzzed_distributor, 3)
    return Cast(
        owner=owner,
        other=sign_in(client, "0812-1000-0002"),
        fuzzed=fuzzed,
        operator=operator,
        distributor=distributor,
        other_distributor=_distributor(stack, channel, "PT Lain"),
        fuzzed_distributor=fuzzed_distributor,
        service_token=service_token(stack),
        owner_order=owner_order,
        owner_stamp=stamped.json()["id"],
        owner_serial=stamped.json()["serial"],
        distributor_order=distributor_order,
        distributor_stamp=single.stamp.stamp_id,
        distributor_customer=customer,
        distributor_job=job.job_id,
    )


def rpc_code(call: Callable[[], T], leaks: LeakCheck | None = None, method: str = "") -> grpc.StatusCode:
    """The status code a gRPC call ends with (OK when it succeeds); its error details are checked
    against `leaks` when given."""
    try:
        call()
    except grpc.RpcError as error:
        if leaks is not None:
            leaks.check_rpc_error(method, error)
        return error.code()
    return grpc.StatusCode.OK
