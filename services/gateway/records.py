"""How ledger and verification records look to the outside: StampRecord for gRPC, JSON for HTTP."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from emeterai.v1 import accounts_pb2, common_pb2, distributor_service_pb2, ledger_pb2, verification_pb2
from services.common.errors import InvalidInput
from services.gateway.problem_texts import ENGLISH, verification_problem

_STAMP_STATUS = {
    ledger_pb2.HOLD_STATUS_RESERVED: distributor_service_pb2.STAMP_STATUS_STAMPING,
    ledger_pb2.HOLD_STATUS_COMMITTED: distributor_service_pb2.STAMP_STATUS_STAMPED,
    ledger_pb2.HOLD_STATUS_RELEASED: distributor_service_pb2.STAMP_STATUS_RELEASED,
}


def stamp_record(hold: ledger_pb2.Hold) -> distributor_service_pb2.StampRecord:
    return distributor_service_pb2.StampRecord(
        stamp_id=hold.hold_id,
        account_id=hold.account_id,
        serial=hold.serial,
        status=_STAMP_STATUS.get(hold.status, distributor_service_pb2.STAMP_STATUS_UNSPECIFIED),
        metadata=hold.metadata,
        document_sha256=hold.document_sha256,
        stamped_sha256=hold.stamped_sha256,
        release_reason=hold.release_reason,
        created_at=hold.created_at,
        resolved_at=hold.resolved_at,
    )


def enum_word(enum: Any, value: int) -> str:
    """'STAMP_STATUS_STAMPED' -> 'stamped': the enum's prefix is noise in JSON."""
    name = enum.Name(value)
    prefix = enum.DESCRIPTOR.name
    snake = "".join(f"_{c}" if c.isupper() else c for c in prefix).lstrip("_").upper() + "_"
    return name.removeprefix(snake).lower()


def timestamp_json(ts: Timestamp) -> str | None:
    return ts.ToDatetime().isoformat() + "Z" if ts.seconds or ts.nanos else None


def document_type(word: str) -> common_pb2.DocumentType.ValueType:
    """'agreement' -> DOCUMENT_TYPE_AGREEMENT; empty means other."""
    if not word:
        return common_pb2.DOCUMENT_TYPE_OTHER
    try:
        value = common_pb2.DocumentType.Value("DOCUMENT_TYPE_" + word.strip().upper())
    except ValueError:
        allowed = ", ".join(
            enum_word(common_pb2.DocumentType, v)
            for v in common_pb2.DocumentType.values()
            if v != common_pb2.DOCUMENT_TYPE_UNSPECIFIED
        )
        raise InvalidInput(f"unknown doc_type {word!r}; use one of: {allowed}") from None
    if value == common_pb2.DOCUMENT_TYPE_UNSPECIFIED:
        raise InvalidInput("doc_type must name a document type")
    return value


def parse_rect(text: str) -> common_pb2.Rect | None:
    """'llx,lly,urx,ury' in points; empty means the default placement."""
    if not text.strip():
        return None
    parts = text.split(",")
    try:
        llx, lly, urx, ury = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput("rect must be four numbers: llx,lly,urx,ury (PDF points)") from None
    if not (urx > llx and ury > lly):
        raise InvalidInput("rect must have urx > llx and ury > lly")
    return common_pb2.Rect(llx=llx, lly=lly, urx=urx, ury=ury)


def stamp_json(record: distributor_service_pb2.StampRecord) -> dict[str, Any]:
    metadata = record.metadata
    return {
        "id": record.stamp_id,
        "serial": record.serial,
        "status": enum_word(distributor_service_pb2.StampStatus, record.status),
        "document": {
            "type": enum_word(common_pb2.DocumentType, metadata.type),
            "name": metadata.name,
            "number": metadata.number,
            "date": metadata.date,
            "value_idr": metadata.value_idr,
        },
        "document_sha256": record.document_sha256.hex(),
        "stamped_sha256": record.stamped_sha256.hex() or None,
        "release_reason": (
            enum_word(ledger_pb2.ReleaseReason, record.release_reason) if record.release_reason else None
        ),
        "created_at": timestamp_json(record.created_at),
        "resolved_at": timestamp_json(record.resolved_at),
        "pdf_url": f"/v1/stamps/{record.stamp_id}/pdf"
        if record.status == distributor_service_pb2.STAMP_STATUS_STAMPED
        else None,
    }


def order_json(order: ledger_pb2.Order) -> dict[str, Any]:
    return {
        "id": order.order_id,
        "quantity": order.quantity,
        "unit_price_idr": order.unit_price_idr,
        "amount_idr": order.amount_idr,
        "status": enum_word(ledger_pb2.OrderStatus, order.status),
        "payment": {
            "provider": order.payment_provider,
            "reference": order.payment_reference,
            "url": order.payment_url,
        },
        "refunded_quantity": order.refunded_quantity,
        "created_at": timestamp_json(order.created_at),
        "expires_at": timestamp_json(order.expires_at),
        "paid_at": timestamp_json(order.paid_at),
    }


def refund_json(refund: ledger_pb2.Refund) -> dict[str, Any]:
    return {
        "id": refund.refund_id,
        "order_id": refund.order_id,
        "quantity": refund.quantity,
        "amount_idr": refund.amount_idr,
        "reason": refund.reason,
        "status": enum_word(ledger_pb2.RefundStatus, refund.status),
        "created_at": timestamp_json(refund.created_at),
        "completed_at": timestamp_json(refund.completed_at),
    }


def credential_json(
    credential: accounts_pb2.DistributorCredential, secret: str = "", webhook_secret: str = ""
) -> dict[str, Any]:
    """A distributor's credential; its secrets only when just created or rotated (shown once)."""
    out: dict[str, Any] = {
        "client_id": credential.client_id,
        "account_id": credential.account_id,
        "name": credential.display_name,
        "scopes": list(credential.scopes),
        "revoked": credential.HasField("revoked_at"),
    }
    if secret:
        out["client_secret"] = secret
    if webhook_secret:
        out["webhook_secret"] = webhook_secret
    return out


def balance_json(balance: ledger_pb2.Balance) -> dict[str, Any]:
    return {
        "available": balance.available,
        "held": balance.held,
        "consumed": balance.consumed,
        "refunded": balance.refunded,
        "purchased": balance.purchased,
    }


def serial_json(record: ledger_pb2.SerialRecord) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "status": enum_word(ledger_pb2.SerialStatus, record.status),
        "issued_at": timestamp_json(record.issued_at),
        "stamped_at": timestamp_json(record.stamped_at),
    }


def verification_json(report: verification_pb2.VerificationReport, language: str = ENGLISH) -> dict[str, Any]:
    """The report as /v1/verify answers it: each signature's problems in the caller's language."""
    signatures = [
        {
            "field": s.field_name,
            "serial": s.serial or None,
            "signature_valid": s.signature_valid,
            "document_intact": s.document_intact,
            "covers_whole_document": s.covers_whole_document,
            "chain_trusted": s.chain_trusted,
            "signer": s.signer_subject,
            "signed_at": timestamp_json(s.signed_at),
            "has_timestamp": s.has_timestamp,
            "timestamp_valid": s.timestamp_valid,
            "timestamp_time": timestamp_json(s.timestamp_time),
            "kind": enum_word(verification_pb2.SignatureKind, s.kind) if s.kind else None,
            "later_changes": enum_word(verification_pb2.LaterChanges, s.later_changes)
            if s.later_changes
            else None,
            "serial_status": enum_word(ledger_pb2.SerialStatus, s.serial_status) if s.serial else None,
            "problems": [verification_problem(problem, language) for problem in s.problems],
        }
        for s in report.signatures
    ]
    return {"document_sha256": report.document_sha256.hex(), "signatures": signatures}
