"""Who may call what: every HTTP route and every RPC, called by every role, against a table.

The routes come from the running gateway's /openapi.json and the RPCs from the service
descriptors, so a route or an RPC added without a row here fails `test_every_*_has_a_row`.

A refusal must be the authorisation's own: 401 with a Bearer challenge, or 403 naming the API the
caller may not use (HTTP); UNAUTHENTICATED or PERMISSION_DENIED (gRPC). A call that is allowed may
still fail on its (deliberately harmless) input, but never as an authorisation refusal and never
with a 5xx, INTERNAL or UNKNOWN. A public route must answer every role as it answers no role at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from emeterai.v1 import (
    auth_service_pb2,
    distributor_service_pb2,
    quota_service_pb2,
    signer_service_pb2,
)
from emeterai.v1 import distributor_service_pb2 as dpb
from tests.hostile import Cast, Hostile, small_pdf

pytestmark = pytest.mark.e2e

ANON, RETAIL, OTHER, DISTRIBUTOR, OTHER_DISTRIBUTOR, OPERATOR, SERVICE = (
    "anonymous",
    "retail",
    "other-retail",
    "distributor",
    "other-distributor",
    "operator",
    "service",
)
HTTP_ROLES = (ANON, RETAIL, OTHER, DISTRIBUTOR, OPERATOR, SERVICE)
GRPC_ROLES = (ANON, RETAIL, DISTRIBUTOR, OTHER_DISTRIBUTOR, OPERATOR, SERVICE)

# Expectations. ALLOWED: not refused by authorisation, and no server error.
ALLOWED = "allowed"
UNAUTHENTICATED = "401"
FORBIDDEN = "403"
NOT_FOUND = "404"
# Only on public routes: whatever anonymous gets, every role gets.
SAME_AS_ANONYMOUS = "public"

PUBLIC = dict.fromkeys(HTTP_ROLES, SAME_AS_ANONYMOUS)
RETAIL_ONLY = {
    ANON: UNAUTHENTICATED,
    RETAIL: ALLOWED,
    OTHER: ALLOWED,
    DISTRIBUTOR: FORBIDDEN,
    OPERATOR: FORBIDDEN,
    SERVICE: FORBIDDEN,
}
# A route naming one of the retail owner's things: anyone else's account does not see it.
OWNERS_ONLY = RETAIL_ONLY | {OTHER: NOT_FOUND}
OPERATORS_ONLY = {
    ANON: UNAUTHENTICATED,
    RETAIL: FORBIDDEN,
    OTHER: FORBIDDEN,
    DISTRIBUTOR: FORBIDDEN,
    OPERATOR: ALLOWED,
    SERVICE: FORBIDDEN,
}

# The 403s of the gateway's own authorisation (services/gateway/http_api.py).
REFUSALS = {
    "this API is for retail accounts; distributors use the gRPC API",
    "this API is for operators",
}


def phone_of(role: str, block: int = 0) -> str:
    """A number of the role's own, so one role's codes and wrong tries do not hold back the next."""
    return f"0819-7000-{block + HTTP_ROLES.index(role):04d}"


NOT_A_PDF = {"file": ("doc.pdf", b"not a pdf", "application/pdf")}


@dataclass(frozen=True)
class HttpCall:
    """A request with harmless input: it does nothing lasting however far it gets."""

    path: str
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    send_token: bool = True


KEY = {"Idempotency-Key": "matrix"}

# "METHOD /template": (expectations by role, the request). {order}, {stamp} and {serial} are the
# retail owner's.
HTTP_MATRIX: dict[str, tuple[dict[str, str], Callable[[str], HttpCall]]] = {
    "POST /v1/auth/otp": (PUBLIC, lambda role: HttpCall("/v1/auth/otp", json={"phone": phone_of(role)})),
    "POST /v1/auth/token": (
        PUBLIC,
        lambda role: HttpCall("/v1/auth/token", json={"phone": phone_of(role, 100), "code": "000000"}),
    ),
    "POST /v1/auth/refresh": (
        PUBLIC,
        lambda role: HttpCall("/v1/auth/refresh", json={"refresh_token": "not-a-refresh-token"}),
    ),
    # Signing out with the role's token would end its session for the tests that follow; the route
    # reads a token only to revoke it, never to allow anything.
    "POST /v1/auth/logout": (
        PUBLIC,
        lambda role: HttpCall(
            "/v1/auth/logout", json={"refresh_token": "not-a-refresh-token"}, send_token=False
        ),
    ),
    "GET /v1/notice": (PUBLIC, lambda role: HttpCall("/v1/notice")),
    "GET /v1/serials/{serial}": (PUBLIC, lambda role: HttpCall("/v1/serials/{serial}")),
    "POST /v1/verify": (PUBLIC, lambda role: HttpCall("/v1/verify", files=NOT_A_PDF)),
    "POST /v1/payments/webhooks/{provider}": (
        PUBLIC,
        lambda role: HttpCall("/v1/payments/webhooks/sandbox", json={"type": "payment.succeeded"}),
    ),
    "GET /v1/config": (PUBLIC, lambda role: HttpCall("/v1/config")),
    "GET /v1/dev/outbox": (
        PUBLIC,
        lambda role: HttpCall("/v1/dev/outbox", params={"phone": "+6281970009999"}),
    ),
    "POST /v1/dev/payments/{order_id}/pay": (PUBLIC, lambda role: HttpCall("/v1/dev/payments/ord_none/pay")),
    "POST /v1/previews": (RETAIL_ONLY, lambda role: HttpCall("/v1/previews", files=NOT_A_PDF)),
    "POST /v1/orders": (
        RETAIL_ONLY,
        # Over the largest order allowed: refused by validation, after authorisation.
        lambda role: HttpCall("/v1/orders", json={"quantity": 100_001}, headers=KEY),
    ),
    "GET /v1/orders": (RETAIL_ONLY, lambda role: HttpCall("/v1/orders")),
    "GET /v1/orders/{order_id}": (OWNERS_ONLY, lambda role: HttpCall("/v1/orders/{order}")),
    "POST /v1/orders/{order_id}/refund": (
        OWNERS_ONLY,
        lambda role: HttpCall(
            "/v1/orders/{order}/refund", json={"quantity": 100_000}, headers={"Idempotency-Key": f"m-{role}"}
        ),
    ),
    "GET /v1/balance": (RETAIL_ONLY, lambda role: HttpCall("/v1/balance")),
    "POST /v1/stamps": (
        RETAIL_ONLY,
        lambda role: HttpCall("/v1/stamps", data={"pin": "000000"}, files=NOT_A_PDF, headers=KEY),
    ),
    "GET /v1/stamps": (RETAIL_ONLY, lambda role: HttpCall("/v1/stamps")),
    "GET /v1/stamps/{stamp_id}": (OWNERS_ONLY, lambda role: HttpCall("/v1/stamps/{stamp}")),
    "GET /v1/stamps/{stamp_id}/pdf": (OWNERS_ONLY, lambda role: HttpCall("/v1/stamps/{stamp}/pdf")),
    # A PIN too easy to guess is refused before anything is changed.
    "PUT /v1/account/pin": (RETAIL_ONLY, lambda role: HttpCall("/v1/account/pin", json={"pin": "123456"})),
    "POST /v1/account/pin/reset": (
        RETAIL_ONLY,
        lambda role: HttpCall("/v1/account/pin/reset", json={"code": "000000", "pin": "123456"}),
    ),
    "POST /v1/admin/orders/{order_id}/refund": (
        OPERATORS_ONLY,
        lambda role: HttpCall(
            "/v1/admin/orders/{order}/refund",
            json={"quantity": 100_000},
            headers={"Idempotency-Key": f"a-{role}"},
        ),
    ),
    "GET /v1/admin/audit": (OPERATORS_ONLY, lambda role: HttpCall("/v1/admin/audit")),
    "PUT /v1/admin/notice": (OPERATORS_ONLY, lambda role: HttpCall("/v1/admin/notice", json={"text_id": ""})),
    "DELETE /v1/admin/notice": (OPERATORS_ONLY, lambda role: HttpCall("/v1/admin/notice")),
    "GET /v1/admin/distributors": (OPERATORS_ONLY, lambda role: HttpCall("/v1/admin/distributors")),
    "POST /v1/admin/distributors": (
        OPERATORS_ONLY,
        lambda role: HttpCall("/v1/admin/distributors", json={"name": ""}),
    ),
    "POST /v1/admin/distributors/{client_id}/rotate": (
        OPERATORS_ONLY,
        lambda role: HttpCall("/v1/admin/distributors/cli_none/rotate"),
    ),
    "POST /v1/admin/distributors/{client_id}/revoke": (
        OPERATORS_ONLY,
        lambda role: HttpCall("/v1/admin/distributors/cli_none/revoke"),
    ),
}


def http_tokens(cast: Cast) -> dict[str, str | None]:
    return {
        ANON: None,
        RETAIL: cast.owner["Authorization"],
        OTHER: cast.other["Authorization"],
        DISTRIBUTOR: f"Bearer {cast.distributor.token}",
        OPERATOR: cast.operator["Authorization"],
        SERVICE: f"Bearer {cast.service_token}",
    }


def http_request(hostile: Hostile, route: str, role: str) -> httpx.Response:
    method = route.split()[0]
    call = HTTP_MATRIX[route][1](role)
    cast = hostile.cast
    path = call.path.format(order=cast.owner_order, stamp=cast.owner_stamp, serial=cast.owner_serial)
    headers = dict(call.headers)
    token = http_tokens(cast)[role]
    if token is not None and call.send_token:
        headers["Authorization"] = token
    return hostile.http.request(
        method, path, json=call.json, data=call.data, files=call.files, params=call.params, headers=headers
    )


def test_every_http_route_has_a_row(hostile: Hostile) -> None:
    schema = hostile.http.get("/openapi.json").json()
    routes = {f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item}
    assert routes - set(HTTP_MATRIX) == set(), "routes without a row in HTTP_MATRIX"
    assert set(HTTP_MATRIX) - routes == set(), "rows for routes the gateway does not have"


@pytest.mark.parametrize("route", list(HTTP_MATRIX))
def test_http_route_answers_each_role_as_the_table_says(hostile: Hostile, route: str) -> None:
    expected = HTTP_MATRIX[route][0]
    anonymous = http_request(hostile, route, ANON)
    wrong = []
    for role in HTTP_ROLES:
        response = anonymous if role == ANON else http_request(hostile, route, role)
        outcome = expected[role]
        status = response.status_code
        detail = _detail(response)
        if outcome == SAME_AS_ANONYMOUS:
            ok = status < 500 and status == anonymous.status_code
        elif outcome == ALLOWED:
            ok = status < 500 and status != 401 and not (status == 403 and detail in REFUSALS)
        elif outcome == UNAUTHENTICATED:
            ok = status == 401 and response.headers.get("www-authenticate", "").startswith("Bearer")
        elif outcome == FORBIDDEN:
            ok = status == 403 and detail in REFUSALS
        else:
            ok = status == int(outcome)
        if not ok:
            wrong.append(f"{role}: expected {outcome}, got {status} {detail!r}")
    assert not wrong, f"{route}: " + "; ".join(wrong)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return ""


def test_a_retail_user_cannot_reach_a_distributors_stamp(hostile: Hostile) -> None:
    stamp = hostile.cast.distributor_stamp
    for path in (f"/v1/stamps/{stamp}", f"/v1/stamps/{stamp}/pdf"):
        assert hostile.http.get(path, headers=hostile.cast.owner).status_code == 404, path


# ---------------------------------------------------------------------------------------------
# gRPC

AUTHORISATION_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# What the auth interceptor (services/common/interceptors.py) and the verifier refuse with: a domain
# refusal of an allowed call (a wrong client secret, say) says something else.
INTERCEPTOR_REFUSALS = {
    "this caller may not call this method",
    "missing bearer token",
    "malformed token",
    "token is not signed with a known key",
    "token has expired",
    "token is invalid",
    "token has been revoked; sign in again",
}
G_ALLOWED = "allowed"
G_PUBLIC = "public"
SERVICES_ONLY = {
    ANON: grpc.StatusCode.UNAUTHENTICATED,
    RETAIL: grpc.StatusCode.PERMISSION_DENIED,
    DISTRIBUTOR: grpc.StatusCode.PERMISSION_DENIED,
    OTHER_DISTRIBUTOR: grpc.StatusCode.PERMISSION_DENIED,
    OPERATOR: grpc.StatusCode.PERMISSION_DENIED,
    SERVICE: G_ALLOWED,
}
OPEN = dict.fromkeys(GRPC_ROLES, G_PUBLIC)
DISTRIBUTORS_ONLY = {
    ANON: grpc.StatusCode.UNAUTHENTICATED,
    RETAIL: grpc.StatusCode.PERMISSION_DENIED,
    DISTRIBUTOR: G_ALLOWED,
    OTHER_DISTRIBUTOR: G_ALLOWED,
    OPERATOR: grpc.StatusCode.PERMISSION_DENIED,
    SERVICE: grpc.StatusCode.PERMISSION_DENIED,
}
# Naming the first distributor's order, stamp, job or customer: the second one finds nothing.
OWN_DISTRIBUTOR_ONLY = DISTRIBUTORS_ONLY | {OTHER_DISTRIBUTOR: grpc.StatusCode.NOT_FOUND}

AUTH = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]
QUOTA = quota_service_pb2.DESCRIPTOR.services_by_name["QuotaService"]
SIGNER = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"]
DISTRIBUTOR_SERVICE = distributor_service_pb2.DESCRIPTOR.services_by_name["DistributorService"]

# Internal services: an empty request, since only the authorisation is looked at.
GRPC_MATRIX: dict[str, dict[str, Any]] = {
    **{f"AuthService/{m}": SERVICES_ONLY for m in AUTH.methods_by_name},
    "AuthService/GetJwks": OPEN,
    "AuthService/IssueServiceToken": OPEN,
    **{f"QuotaService/{m}": SERVICES_ONLY for m in QUOTA.methods_by_name},
    **{f"SignerService/{m}": SERVICES_ONLY for m in SIGNER.methods_by_name},
    "DistributorService/IssueToken": OPEN,
    "DistributorService/CreateOrder": DISTRIBUTORS_ONLY,
    "DistributorService/GetOrder": OWN_DISTRIBUTOR_ONLY,
    # Always the caller's own orders: another distributor sees its own list, not these.
    "DistributorService/ListOrders": DISTRIBUTORS_ONLY,
    "DistributorService/CancelOrder": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/RefundOrder": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/GetBalance": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/CreateCustomer": DISTRIBUTORS_ONLY,
    "DistributorService/ListCustomers": DISTRIBUTORS_ONLY,
    "DistributorService/TransferQuota": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/StampDocument": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/BatchStamp": DISTRIBUTORS_ONLY,
    "DistributorService/SubmitStampJob": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/GetStampJob": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/RotateWebhookSecret": DISTRIBUTORS_ONLY,
    "DistributorService/GetStamp": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/ListStamps": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/DownloadStampedDocument": OWN_DISTRIBUTOR_ONLY,
    "DistributorService/LookupSerial": DISTRIBUTORS_ONLY,
    "DistributorService/VerifyDocument": DISTRIBUTORS_ONLY,
    "DistributorService/GetNotice": DISTRIBUTORS_ONLY,
}


def distributor_request(method: str, cast: Cast) -> Any:
    """Requests naming the first distributor's things, harmless for their owner."""
    customer = cast.distributor_customer
    requests: dict[str, Any] = {
        "GetOrder": dpb.DistributorServiceGetOrderRequest(order_id=cast.distributor_order),
        # Already paid: cancelling it is refused (for its owner, a precondition).
        "CancelOrder": dpb.DistributorServiceCancelOrderRequest(order_id=cast.distributor_order),
        "RefundOrder": dpb.DistributorServiceRefundOrderRequest(
            order_id=cast.distributor_order, quantity=100_000, idempotency_key="matrix"
        ),
        "GetBalance": dpb.DistributorServiceGetBalanceRequest(account_id=customer),
        # More than the distributor has: refused for its owner too.
        "TransferQuota": dpb.DistributorServiceTransferQuotaRequest(
            to_account_id=customer, quantity=100_000, idempotency_key="matrix"
        ),
        # The customer has no quota of its own.
        "StampDocument": dpb.StampDocumentRequest(
            document=small_pdf(), account_id=customer, idempotency_key="matrix"
        ),
        "SubmitStampJob": dpb.SubmitStampJobRequest(
            documents=[
                dpb.BatchStampRequest(document=dpb.StampDocumentRequest(document=b"x", account_id=customer))
            ],
            # An idempotency key already used for another job: the owner's answer is a conflict.
            idempotency_key="own-job",
        ),
        "GetStampJob": dpb.GetStampJobRequest(job_id=cast.distributor_job),
        "GetStamp": dpb.GetStampRequest(stamp_id=cast.distributor_stamp),
        "ListStamps": dpb.ListStampsRequest(account_id=customer),
        "DownloadStampedDocument": dpb.DownloadStampedDocumentRequest(stamp_id=cast.distributor_stamp),
        "BatchStamp": dpb.BatchStampRequest(document=dpb.StampDocumentRequest(document=b"x")),
        "CreateOrder": dpb.DistributorServiceCreateOrderRequest(quantity=0, idempotency_key="matrix"),
        "LookupSerial": dpb.DistributorServiceLookupSerialRequest(serial="0" * 22),
        "VerifyDocument": dpb.VerifyDocumentRequest(document=b"not a pdf"),
        "CreateCustomer": dpb.CreateCustomerRequest(display_name="Toko Matriks", external_ref="matrix"),
    }
    return requests.get(method)


def grpc_metadata(cast: Cast, role: str) -> tuple[tuple[str, str], ...]:
    tokens = {
        ANON: None,
        RETAIL: cast.owner["Authorization"].removeprefix("Bearer "),
        DISTRIBUTOR: cast.distributor.token,
        OTHER_DISTRIBUTOR: cast.other_distributor.token,
        OPERATOR: cast.operator["Authorization"].removeprefix("Bearer "),
        SERVICE: cast.service_token,
    }
    token = tokens[role]
    return () if token is None else (("authorization", f"Bearer {token}"),)


def grpc_call(hostile: Hostile, name: str, role: str) -> tuple[grpc.StatusCode, str]:
    service_name, method_name = name.split("/")
    service = {"AuthService": AUTH, "QuotaService": QUOTA, "SignerService": SIGNER}.get(service_name)
    method: MethodDescriptor = (service or DISTRIBUTOR_SERVICE).methods_by_name[method_name]
    address = (
        hostile.stack.grpc_address
        if service is None
        else hostile.internal_address(service_name.removesuffix("Service").lower())
    )
    request = None if service is not None else distributor_request(method_name, hostile.cast)
    if request is None:
        request = message_factory.GetMessageClass(method.input_type)()
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = grpc_metadata(hostile.cast, role)
    with grpc.insecure_channel(address) as channel:
        try:
            if method.client_streaming:
                responses = channel.stream_stream(
                    path,
                    request_serializer=type(request).SerializeToString,
                    response_deserializer=response_class.FromString,
                )(iter([request]), metadata=metadata, timeout=60)
                list(responses)
            else:
                channel.unary_unary(
                    path,
                    request_serializer=type(request).SerializeToString,
                    response_deserializer=response_class.FromString,
                )(request, metadata=metadata, timeout=60)
        except grpc.RpcError as error:
            hostile.leaks.check_rpc_error(name, error)
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def test_every_rpc_has_a_row() -> None:
    rpcs = {
        f"{service.name}/{method}"
        for service in (AUTH, QUOTA, SIGNER, DISTRIBUTOR_SERVICE)
        for method in service.methods_by_name
    }
    assert rpcs - set(GRPC_MATRIX) == set(), "RPCs without a row in GRPC_MATRIX"
    assert set(GRPC_MATRIX) - rpcs == set()


@pytest.mark.parametrize("rpc", list(GRPC_MATRIX))
def test_rpc_answers_each_role_as_the_table_says(hostile: Hostile, rpc: str) -> None:
    expected = GRPC_MATRIX[rpc]
    anonymous, _ = grpc_call(hostile, rpc, ANON)
    broken = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
    wrong = []
    for role in GRPC_ROLES:
        code, details = grpc_call(hostile, rpc, role)
        refused = code in AUTHORISATION_CODES and details in INTERCEPTOR_REFUSALS
        outcome = expected[role]
        if outcome == G_PUBLIC:
            ok = code == anonymous and code not in broken and not refused
        elif outcome == G_ALLOWED:
            ok = code not in broken and not refused
        elif outcome == grpc.StatusCode.NOT_FOUND:
            ok = code == outcome
        else:
            ok = code == outcome and refused
        if not ok:
            wrong.append(f"{role}: expected {getattr(outcome, 'name', outcome)}, got {code.name} {details!r}")
    assert not wrong, f"{rpc}: " + "; ".join(wrong)


def test_the_owner_rows_really_reach_the_owners_things(hostile: Hostile) -> None:
    # The cross-account rows above mean something only if the owner's own calls find the things.
    cast = hostile.cast
    api = hostile.distributor_api
    own = cast.distributor.metadata
    assert api.GetStamp(dpb.GetStampRequest(stamp_id=cast.distributor_stamp), metadata=own).stamp.stamp_id
    assert api.GetOrder(
        dpb.DistributorServiceGetOrderRequest(order_id=cast.distributor_order), metadata=own
    ).order.order_id
    assert api.GetStampJob(dpb.GetStampJobRequest(job_id=cast.distributor_job), metadata=own).job_id
    assert (
        api.GetBalance(
            dpb.DistributorServiceGetBalanceRequest(account_id=cast.distributor_customer), metadata=own
        ).balance
        is not None
    )
    for path in (
        f"/v1/orders/{cast.owner_order}",
        f"/v1/stamps/{cast.owner_stamp}",
        f"/v1/stamps/{cast.owner_stamp}/pdf",
    ):
        assert hostile.http.get(path, headers=cast.owner).status_code == 200, path
