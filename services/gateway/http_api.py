"""The retail HTTP API. Routes translate HTTP to the flows and the internal services; nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile as FormFile
from starlette.requests import ClientDisconnect

from emeterai.v1 import auth_service_pb2, common_pb2, quota_service_pb2
from services.common.errors import InvalidInput, NotFound, PermissionDenied
from services.common.settings import GatewaySettings
from services.common.tokens import KIND_OPERATOR, KIND_RETAIL, Principal, TokenVerifier, bearer_token
from services.common.webhooks import sign_webhook
from services.gateway import api_docs, problems
from services.gateway.documents import DocumentStore
from services.gateway.edge import PRINCIPAL_STATE, STAMP_SLOT_STATE, AdmissionControl, HttpAdmission
from services.gateway.metrics import HttpMetrics
from services.gateway.notices import NoticeBoard
from services.gateway.records import (
    balance_json,
    credential_json,
    document_type,
    order_json,
    parse_rect,
    refund_json,
    serial_json,
    stamp_json,
    stamp_record,
    timestamp_json,
    verification_json,
)
from services.gateway.slow_clients import BodyTimeout
from services.gateway.stamping import StampingFlow, check_document
from services.gateway.upstream import Backends, idempotent, upstream
from services.gateway.verification import verify_document
from services.gateway.waiting_room import TICKET_HEADER
from services.gateway.web import web_routes

log = logging.getLogger(__name__)

WEBHOOK_SIGNATURE_HEADER = "Webhook-Signature"
# Multipart framing around the file: allowed on top of the upload limit.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Gateway:
    settings: GatewaySettings
    backends: Backends
    verifier: TokenVerifier
    store: DocumentStore
    stamping: StampingFlow
    notices: NoticeBoard
    admission: AdmissionControl


async def _gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop on every request.
    return request.app.state.gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


def _caller(kind: str, refusal: str) -> Callable[[Request, Gateway], Awaitable[Principal]]:
    """A dependency: the verified caller, who must hold a token of `kind`."""

    async def caller(request: Request, gateway: GatewayDep) -> Principal:
        # Admission may have verified the token already, before the body was read.
        principal = getattr(request.state, PRINCIPAL_STATE, None) or await gateway.verifier.verify(
            bearer_token(request.headers.get("authorization"))
        )
        if principal.kind != kind:
            raise PermissionDenied(refusal)
        return principal

    return caller


_retail_user = _caller(KIND_RETAIL, "this API is for retail accounts; distributors use the gRPC API")
_operator = _caller(KIND_OPERATOR, "this API is for operators")


User = Annotated[Principal, Depends(_retail_user)]
Operator = Annotated[Principal, Depends(_operator)]
# As long as the ledger keeps (services/quota/schema.py KEY_LENGTH): a longer one is refused here,
# by its own name.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


def _require_key(key: str | None) -> str:
    if not key or not key.strip():
        raise InvalidInput("the Idempotency-Key header is required for this request")
    return key.strip()


class OtpRequest(BaseModel):
    phone: str = Field(min_length=6, max_length=32, examples=["081234567890"])


class TokenRequest(BaseModel):
    phone: str = Field(min_length=6, max_length=32)
    code: str = Field(min_length=4, max_length=12)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=512)


class OrderRequest(BaseModel):
    quantity: int = Field(ge=1, le=100_000)


class PinResetRequest(BaseModel):
    code: str = Field(min_length=4, max_length=12, description="the one-time code just sent to your phone")
    pin: str = Field(pattern=r"^\d{6}$", description="the new stamping PIN: 6 digits")


class NoticeRequest(BaseModel):
    text_id: str = Field(min_length=1, max_length=1000, description="the notice in Indonesian")
    text_en: str = Field(min_length=1, max_length=1000, description="the notice in English")


def _notice_json(notice: Any) -> dict[str, Any]:
    if notice is None:
        return {"notice": None}
    return {
        "notice": {
            "id": notice.text_id,
            "en": notice.text_en,
            "published_at": timestamp_json(notice.published_at),
        }
    }


class RefundRequest(BaseModel):
    quantity: int = Field(default=0, ge=0, le=100_000, description="units to refund; 0 = every unused one")
    reason: str = Field(default="", max_length=200)


class DistributorRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=20)


async def _refund(
    gateway: Gateway, order_id: str, account_id: str, body: RefundRequest, key: str
) -> dict[str, Any]:
    refunded = await idempotent(
        gateway.backends.quota.RefundOrder(
            quota_service_pb2.RefundOrderRequest(
                order_id=order_id,
                account_id=account_id,
                quantity=body.quantity,
                reason=body.reason,
                idempotency_key=key,
            ),
            timeout=30,
        )
    )
    return {"refund": refund_json(refunded.refund), "order": order_json(refunded.order)}


PIN_PATTERN = r"^\d{6}$"


class PinRequest(BaseModel):
    pin: str = Field(pattern=PIN_PATTERN, description="the new stamping PIN: 6 digits")
    current_pin: str = Field(default="", pattern=r"^(\d{6})?$", description="needed to change a PIN")


class StampForm(BaseModel):
    """The fields of POST /v1/stamps beside the file (the file is in the OpenAPI schema too)."""

    page: int = Field(default=0, ge=0, le=100_000, description="1-based page; 0 = last page")
    rect: str = Field(default="", max_length=100, description="llx,lly,urx,ury in PDF points")
    doc_type: str = Field(default="other", max_length=40)
    doc_name: str = Field(default="", max_length=200)
    doc_number: str = Field(default="", max_length=100)
    doc_date: str = Field(default="", max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")
    # Rupiah; bounded well inside the ledger's int64 (a quadrillion rupiah is no real document).
    doc_value: int = Field(default=0, ge=0, le=10**15, description="the document's value in rupiah")
    pin: str = Field(default="", pattern=PIN_PATTERN, description="the account's stamping PIN")


def _stamp_form_openapi() -> dict[str, Any]:
    """POST /v1/stamps's body for the OpenAPI document, which FastAPI cannot see (_stamp_form)."""
    schema = StampForm.model_json_schema()
    schema["title"] = "StampRequest"
    schema["properties"] = {
        "file": {"type": "string", "format": "binary", "description": "the PDF to stamp"},
        **schema["properties"],
    }
    schema["required"] = ["file"]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@contextlib.asynccontextmanager
async def _stamp_form(request: Request) -> AsyncIterator[tuple[FormFile, StampForm]]:
    """The upload and the fields of a stamp request, checked as FastAPI checks a route's form
    parameters (an empty field counts as absent; the errors are the same 400), in one step; the
    form's files are closed on the way out.

    FastAPI's own handling of nine form parameters and a file cost the gateway about 0.1 ms a
    stamp, most of it working out each parameter's type again on every request; the parsing is
    Starlette's either way."""
    try:
        # Starlette answers a malformed form itself (400, with what is wrong).
        form = await request.form()
    except ClientDisconnect as gone:
        raise InvalidInput("the request body did not arrive whole") from gone
    try:
        upload = form.get("file")
        found: list[dict[str, Any]] = []
        if not isinstance(upload, FormFile):
            found.append({"type": "missing", "loc": ("body", "file"), "msg": "a PDF file is required"})
        given = {name: value for name, value in form.items() if name != "file" and value != ""}
        fields = None
        try:
            fields = StampForm.model_validate(given)
        except ValidationError as invalid:
            found.extend({**error, "loc": ("body", *error["loc"])} for error in invalid.errors())
        if found or fields is None or not isinstance(upload, FormFile):
            raise RequestValidationError(found)
        yield upload, fields
    finally:
        await form.close()


async def _check_stamping_pin(gateway: Gateway, account_id: str, pin: str) -> None:
    """The account's stamping PIN, as the national portal asks before every stamp; wrong tries are
    counted by the auth service, which locks the PIN after a few."""
    checked = await upstream(
        gateway.backends.auth.VerifyStampingPin(
            auth_service_pb2.VerifyStampingPinRequest(account_id=account_id, pin=pin), timeout=10
        )
    )
    if checked.valid:
        return
    if checked.attempts_left <= 0:
        raise PermissionDenied("the stamping PIN is locked after too many wrong tries")
    raise PermissionDenied(f"wrong stamping PIN; {checked.attempts_left} tries left before it locks")


def _tokens_json(tokens: Any) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type or "Bearer",
        "expires_in": tokens.expires_in_seconds,
    }


def _client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _public_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/auth/otp", tags=["auth"], summary="Send a one-time sign-in code to a phone")
    async def request_otp(body: OtpRequest, request: Request, gateway: GatewayDep) -> dict[str, Any]:
        sent = await upstream(
            gateway.backends.auth.RequestOtp(
                auth_service_pb2.RequestOtpRequest(phone=body.phone, client_address=_client_address(request)),
                timeout=10,
            )
        )
        return {
            "phone": sent.phone,
            "expires_in": sent.expires_in_seconds,
            "resend_after": sent.resend_after_seconds,
        }

    @router.post("/auth/token", tags=["auth"], summary="Trade a one-time code for tokens")
    async def verify_otp(body: TokenRequest, request: Request, gateway: GatewayDep) -> dict[str, Any]:
        verified = await upstream(
            gateway.backends.auth.VerifyOtp(
                auth_service_pb2.VerifyOtpRequest(
                    phone=body.phone, code=body.code, client_address=_client_address(request)
                ),
                timeout=10,
            )
        )
        return {**_tokens_json(verified.tokens), "account_id": verified.account.account_id}

    @router.post("/auth/refresh", tags=["auth"], summary="Trade a refresh token for a new pair")
    async def refresh(body: RefreshRequest, gateway: GatewayDep) -> dict[str, Any]:
        renewed = await upstream(
            gateway.backends.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=body.refresh_token), timeout=10
            )
        )
        return _tokens_json(renewed.tokens)

    @router.post("/auth/logout", tags=["auth"], status_code=204, summary="Sign out")
    async def logout(body: RefreshRequest, request: Request, gateway: GatewayDep) -> Response:
        access = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        await upstream(
            gateway.backends.auth.RevokeToken(
                auth_service_pb2.RevokeTokenRequest(refresh_token=body.refresh_token, access_token=access),
                timeout=10,
            )
        )
        return Response(status_code=204)

    @router.get("/notice", tags=["notices"], summary="The operators' notice to users, if any")
    async def notice(gateway: GatewayDep) -> dict[str, Any]:
        return _notice_json(await gateway.notices.current())

    @router.get("/serials/{serial}", tags=["verification"], summary="Public status of a serial")
    async def lookup_serial(serial: str, gateway: GatewayDep) -> dict[str, Any]:
        if not (1 <= len(serial) <= 64 and serial.isalnum()):
            raise InvalidInput("a serial is 22 letters and digits")
        found = await upstream(
            gateway.backends.quota.LookupSerial(
                quota_service_pb2.LookupSerialRequest(serial=serial), timeout=5
            )
        )
        return serial_json(found.serial)

    @router.post("/verify", tags=["verification"], summary="Verify the e-meterai in a PDF")
    async def verify(
        file: Annotated[UploadFile, File()], request: Request, response: Response, gateway: GatewayDep
    ) -> dict[str, Any]:
        """Each signature's checks, and what is wrong with it in `problems`, in the language the
        caller prefers (Accept-Language: Indonesian or English)."""
        document = await problems.read_upload(file, gateway.settings.max_upload_bytes)
        check_document(document, gateway.settings.max_upload_bytes)
        language = problems.request_language(request)
        response.headers.update(problems.language_headers(language))
        return verification_json(await verify_document(gateway.backends, document), language)

    @router.post("/payments/webhooks/{provider}", tags=["payments"], summary="Payment provider callback")
    async def payment_webhook(provider: str, request: Request, gateway: GatewayDep) -> dict[str, Any]:
        body = await request.body()
        confirmed = await upstream(
            gateway.backends.quota.ConfirmPayment(
                quota_service_pb2.ConfirmPaymentRequest(
                    provider=provider,
                    payload=body,
                    signature=request.headers.get(WEBHOOK_SIGNATURE_HEADER, ""),
                ),
                timeout=10,
            )
        )
        return {"order": order_json(confirmed.order), "replayed": confirmed.replayed}

    return router


def _account_routes() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/orders", tags=["orders"], status_code=201, summary="Open an order for quota")
    async def create_order(
        body: OrderRequest, user: User, gateway: GatewayDep, key: IdempotencyKey = None
    ) -> dict[str, Any]:
        created = await idempotent(
            gateway.backends.quota.CreateOrder(
                quota_service_pb2.CreateOrderRequest(
                    account_id=user.account_id,
                    quantity=body.quantity,
                    idempotency_key=_require_key(key),
                    channel=common_pb2.CHANNEL_RETAIL,
                ),
                timeout=10,
            )
        )
        return order_json(created.order)

    @router.get("/orders", tags=["orders"], summary="The caller's orders")
    async def list_orders(user: User, gateway: GatewayDep) -> dict[str, Any]:
        listed = await upstream(
            gateway.backends.quota.ListOrders(
                quota_service_pb2.ListOrdersRequest(account_id=user.account_id, page_size=100), timeout=10
            )
        )
        return {"orders": [order_json(o) for o in listed.orders]}

    @router.get("/orders/{order_id}", tags=["orders"], summary="One of the caller's orders")
    async def get_order(order_id: str, user: User, gateway: GatewayDep) -> dict[str, Any]:
        found = await upstream(
            gateway.backends.quota.GetOrder(
                quota_service_pb2.GetOrderRequest(order_id=order_id, account_id=user.account_id), timeout=10
            )
        )
        return order_json(found.order)

    @router.post(
        "/orders/{order_id}/refund",
        tags=["orders"],
        summary="Refund unused units of a paid order to the payer",
    )
    async def refund_order(
        order_id: str, body: RefundRequest, user: User, gateway: GatewayDep, key: IdempotencyKey = None
    ) -> dict[str, Any]:
        return await _refund(gateway, order_id, user.account_id, body, _require_key(key))

    @router.get("/balance", tags=["orders"], summary="The caller's quota")
    async def balance(user: User, gateway: GatewayDep) -> dict[str, Any]:
        found = await upstream(
            gateway.backends.quota.GetBalance(
                quota_service_pb2.GetBalanceRequest(account_id=user.account_id), timeout=10
            )
        )
        return balance_json(found.balance)

    @router.post(
        "/stamps",
        tags=["stamps"],
        status_code=201,
        summary="Stamp a PDF",
        responses={
            429: {
                "description": "Stamping is at capacity: the problem's `waiting_room` has the queue "
                "position and a ticket; send the same request (same Idempotency-Key) again after "
                f"Retry-After with the ticket in the {TICKET_HEADER} header to keep the place in line."
            }
        },
        openapi_extra=_stamp_form_openapi(),
    )
    async def stamp(
        request: Request, user: User, gateway: GatewayDep, key: IdempotencyKey = None
    ) -> dict[str, Any]:
        async with _stamp_form(request) as (file, form):
            idempotency_key = _require_key(key)
            if not form.pin:
                raise InvalidInput("the stamping PIN is required to stamp (field pin)")
            document = await problems.read_upload(file, gateway.settings.max_upload_bytes)
        check_document(document, gateway.settings.max_upload_bytes)
        # Before any quota is held: a wrong PIN costs nothing.
        await _check_stamping_pin(gateway, user.account_id, form.pin)
        outcome = await gateway.stamping.stamp(
            account_id=user.account_id,
            idempotency_key=idempotency_key,
            document=document,
            placement=common_pb2.StampPlacement(page=form.page, rect=parse_rect(form.rect)),
            metadata=common_pb2.DocumentMetadata(
                type=document_type(form.doc_type),
                name=form.doc_name or (file.filename or "")[:200],
                number=form.doc_number,
                date=form.doc_date,
                value_idr=form.doc_value,
            ),
            channel=common_pb2.CHANNEL_RETAIL,
            slot=getattr(request.state, STAMP_SLOT_STATE, None),
        )
        return stamp_json(stamp_record(outcome.hold))

    @router.put("/account/pin", tags=["auth"], status_code=204, summary="Set or change the stamping PIN")
    async def set_pin(body: PinRequest, user: User, gateway: GatewayDep) -> Response:
        await upstream(
            gateway.backends.auth.SetStampingPin(
                auth_service_pb2.SetStampingPinRequest(
                    account_id=user.account_id, pin=body.pin, current_pin=body.current_pin
                ),
                timeout=10,
            )
        )
        return Response(status_code=204)

    @router.post(
        "/account/pin/reset",
        tags=["auth"],
        status_code=204,
        summary="Set a new stamping PIN with a one-time code, when the old one is forgotten or locked",
    )
    async def reset_pin(body: PinResetRequest, request: Request, user: User, gateway: GatewayDep) -> Response:
        await upstream(
            gateway.backends.auth.ResetStampingPin(
                auth_service_pb2.ResetStampingPinRequest(
                    account_id=user.account_id,
                    code=body.code,
                    pin=body.pin,
                    client_address=_client_address(request),
                ),
                timeout=10,
            )
        )
        return Response(status_code=204)

    @router.get("/stamps", tags=["stamps"], summary="The caller's stamping history")
    async def list_stamps(user: User, gateway: GatewayDep) -> dict[str, Any]:
        listed = await upstream(
            gateway.backends.quota.ListHolds(
                quota_service_pb2.ListHoldsRequest(account_id=user.account_id, page_size=100), timeout=10
            )
        )
        return {"stamps": [stamp_json(stamp_record(h)) for h in listed.holds]}

    async def _own_hold(stamp_id: str, user: Principal, gateway: Gateway) -> Any:
        found = await upstream(
            gateway.backends.quota.GetHold(
                quota_service_pb2.GetHoldRequest(hold_id=stamp_id, account_id=user.account_id), timeout=10
            )
        )
        return found.hold

    @router.get("/stamps/{stamp_id}", tags=["stamps"], summary="One stamp of the caller")
    async def get_stamp(stamp_id: str, user: User, gateway: GatewayDep) -> dict[str, Any]:
        return stamp_json(stamp_record(await _own_hold(stamp_id, user, gateway)))

    @router.get(
        "/stamps/{stamp_id}/pdf",
        tags=["stamps"],
        summary="Download a stamped PDF",
        response_class=Response,
        responses={200: {"content": {"application/pdf": {}}}},
    )
    async def download(stamp_id: str, user: User, gateway: GatewayDep) -> Response:
        hold = await _own_hold(stamp_id, user, gateway)
        if not hold.stamped_sha256:
            raise NotFound("this stamp has no stamped document")
        document = await asyncio.to_thread(gateway.store.get, hold.hold_id, hold.document_ref)
        return Response(
            document,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="e-meterai-{hold.serial}.pdf"'},
        )

    return router


def _operator_routes() -> APIRouter:
    """For operators (accounts made so with `emeterai operators add`): refunds of any order and
    distributor credentials."""
    router = APIRouter(prefix="/v1/admin", tags=["operators"])

    @router.post("/orders/{order_id}/refund", summary="Refund unused units of any paid order")
    async def refund_any_order(
        order_id: str,
        body: RefundRequest,
        operator: Operator,
        gateway: GatewayDep,
        key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        idempotency_key = _require_key(key)
        log.info("operator refund", extra={"operator": operator.account_id, "order_id": order_id})
        return await _refund(gateway, order_id, "", body, idempotency_key)

    @router.get("/audit", summary="Recompute the audit chain and reconcile the books")
    async def run_audit(operator: Operator, gateway: GatewayDep) -> dict[str, Any]:
        checked = await upstream(gateway.backends.quota.Audit(quota_service_pb2.AuditRequest(), timeout=300))
        log.info("operator ran the audit", extra={"operator": operator.account_id})
        return {
            "ok": not checked.chain_problems and not checked.book_problems,
            "events": checked.events,
            "chain_problems": list(checked.chain_problems),
            "book_problems": list(checked.book_problems),
        }

    @router.put("/notice", summary="Publish the notice every user sees, replacing any other")
    async def publish_notice(body: NoticeRequest, operator: Operator, gateway: GatewayDep) -> dict[str, Any]:
        published = await upstream(
            gateway.backends.auth.PublishNotice(
                auth_service_pb2.PublishNoticeRequest(
                    text_id=body.text_id, text_en=body.text_en, published_by=operator.account_id
                ),
                timeout=10,
            )
        )
        await gateway.notices.refresh()
        return _notice_json(published.notice)

    @router.delete("/notice", status_code=204, summary="End the current notice")
    async def clear_notice(operator: Operator, gateway: GatewayDep) -> Response:
        await upstream(
            gateway.backends.auth.ClearNotice(
                auth_service_pb2.ClearNoticeRequest(cleared_by=operator.account_id), timeout=10
            )
        )
        await gateway.notices.refresh()
        return Response(status_code=204)

    @router.get("/distributors", summary="Every distributor credential")
    async def list_distributors(operator: Operator, gateway: GatewayDep) -> dict[str, Any]:
        listed = await upstream(
            gateway.backends.auth.ListDistributors(auth_service_pb2.ListDistributorsRequest(), timeout=10)
        )
        return {"distributors": [credential_json(c) for c in listed.credentials]}

    @router.post("/distributors", status_code=201, summary="Create a distributor; its secret is shown once")
    async def create_distributor(
        body: DistributorRequest, operator: Operator, gateway: GatewayDep
    ) -> dict[str, Any]:
        created = await upstream(
            gateway.backends.auth.CreateDistributor(
                auth_service_pb2.CreateDistributorRequest(display_name=body.name, scopes=body.scopes),
                timeout=10,
            )
        )
        log.info("operator created a distributor", extra={"operator": operator.account_id})
        return credential_json(created.credential, created.client_secret, created.webhook_secret)

    @router.post("/distributors/{client_id}/rotate", summary="A new secret for a distributor, shown once")
    async def rotate_distributor(client_id: str, operator: Operator, gateway: GatewayDep) -> dict[str, Any]:
        rotated = await upstream(
            gateway.backends.auth.RotateDistributorSecret(
                auth_service_pb2.RotateDistributorSecretRequest(client_id=client_id), timeout=10
            )
        )
        log.info("operator rotated a distributor secret", extra={"operator": operator.account_id})
        return credential_json(rotated.credential, rotated.client_secret)

    @router.post("/distributors/{client_id}/revoke", summary="Stop a distributor's credential for good")
    async def revoke_distributor(client_id: str, operator: Operator, gateway: GatewayDep) -> dict[str, Any]:
        revoked = await upstream(
            gateway.backends.auth.RevokeDistributor(
                auth_service_pb2.RevokeDistributorRequest(client_id=client_id), timeout=10
            )
        )
        log.info("operator revoked a distributor", extra={"operator": operator.account_id})
        return credential_json(revoked.credential)

    return router


def _dev_routes() -> APIRouter:
    """Development helpers: the outbox of the dev notifier and the sandbox payment provider."""
    router = APIRouter(prefix="/v1/dev", tags=["development"])
    # One client for every sandbox payment: building one loads the CA store into a new TLS
    # context, about 10 ms of the event loop's time for each payment.
    sandbox_provider = httpx.AsyncClient(timeout=15)

    @router.get("/outbox", summary="Messages the dev notifier would have sent")
    async def outbox(phone: Annotated[str, Query(min_length=6, max_length=32)], gateway: GatewayDep) -> dict:
        listed = await upstream(
            gateway.backends.auth.ListDevOutbox(
                auth_service_pb2.ListDevOutboxRequest(phone=phone), timeout=10
            )
        )
        return {
            "messages": [{"phone": m.phone, "body": m.body, "channel": m.channel} for m in listed.messages]
        }

    @router.post("/payments/{order_id}/pay", summary="Pay an order in the sandbox provider")
    async def sandbox_pay(order_id: str, request: Request, gateway: GatewayDep) -> dict[str, Any]:
        found = await upstream(
            gateway.backends.quota.GetOrder(quota_service_pb2.GetOrderRequest(order_id=order_id), timeout=10)
        )
        order = found.order
        # The sandbox provider calls our webhook over HTTP, signed, exactly as a real provider would.
        event = json.dumps(
            {
                "event_id": f"evt_{secrets.token_hex(12)}",
                "type": "payment.succeeded",
                "order_id": order.order_id,
                "amount_idr": order.amount_idr,
                "reference": order.payment_reference,
            }
        ).encode()
        signature = sign_webhook(
            gateway.settings.payment_webhook_secret.get_secret_value().encode(), event, int(time.time())
        )
        webhook = str(request.url_for("payment_webhook", provider="sandbox"))
        delivered = await sandbox_provider.post(
            webhook,
            content=event,
            headers={WEBHOOK_SIGNATURE_HEADER: signature, "content-type": "application/json"},
        )
        return {"webhook_status": delivered.status_code, "webhook_response": delivered.json()}

    return router


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="e-meterai",
        version="1",
        summary="Buy e-meterai quota, stamp PDFs and verify them",
        # Served by api_docs, from the gateway's own copy of Swagger UI rather than a CDN.
        docs_url=None,
        redoc_url=None,
        # No OpenTelemetry here (the gateway's metrics are Prometheus, at /metrics); left on,
        # FastAPI looks for configured providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    # Inside the request-id middleware that install() adds, so a refusal carries the id too.
    app.add_middleware(problems.BodyLimit, limit=gateway.settings.max_upload_bytes + MULTIPART_OVERHEAD)
    # A client trickling its body is answered 408 rather than waited for.
    app.add_middleware(BodyTimeout, timeout_s=gateway.settings.http_body_timeout_s)
    # Outside the body limit: admission is decided before any of the body is read.
    app.add_middleware(HttpAdmission, control=gateway.admission, verifier=gateway.verifier)
    problems.install(app)
    # Outermost: every answer is counted, admission's refusals and unexpected 500s too.
    app.add_middleware(HttpMetrics)
    api_docs.install(app)
    app.include_router(_public_routes())
    app.include_router(_account_routes())
    app.include_router(_operator_routes())
    app.include_router(web_routes(_retail_user))
    if gateway.settings.is_dev:
        app.include_router(_dev_routes())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
