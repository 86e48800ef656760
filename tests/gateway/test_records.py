import pytest

from emeterai.v1 import common_pb2, distributor_service_pb2, ledger_pb2
from services.common.errors import InvalidInput
from services.gateway.records import document_type, parse_rect, stamp_json, stamp_record
from services.gateway.stamping import check_document


def test_rect_is_four_points() -> None:
    assert parse_rect("420, 40, 520.5, 140") == common_pb2.Rect(llx=420, lly=40, urx=520.5, ury=140)
    assert parse_rect("") is None


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "10,10,20,10", "1,2,3,4,5"])
def test_bad_rects_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rect(text)


def test_document_types_by_name() -> None:
    assert document_type("agreement") == common_pb2.DOCUMENT_TYPE_AGREEMENT
    assert document_type("MONEY_RECEIPT") == common_pb2.DOCUMENT_TYPE_MONEY_RECEIPT
    assert document_type("") == common_pb2.DOCUMENT_TYPE_OTHER
    with pytest.raises(InvalidInput, match="agreement"):
        document_type("love-letter")
    with pytest.raises(InvalidInput):
        document_type("unspecified")


def test_a_committed_hold_is_a_stamped_record() -> None:
    hold = ledger_pb2.Hold(
        hold_id="hold_1",
        serial="ABCDEFGHJKMNPQRSTVWXYZ",
        status=ledger_pb2.HOLD_STATUS_COMMITTED,
        document_sha256=b"\x01" * 32,
        stamped_sha256=b"\x02" * 32,
        metadata=common_pb2.DocumentMetadata(type=common_pb2.DOCUMENT_TYPE_STATEMENT, name="Surat"),
    )
    record = stamp_record(hold)
    assert record.status == distributor_service_pb2.STAMP_STATUS_STAMPED
    as_json = stamp_json(record)
    assert as_json["status"] == "stamped"
    assert as_json["document"]["type"] == "statement"
    assert as_json["pdf_url"] == "/v1/stamps/hold_1/pdf"
    assert as_json["stamped_sha256"] == "02" * 32


def test_a_released_hold_has_no_download() -> None:
    hold = ledger_pb2.Hold(
        hold_id="hold_2",
        status=ledger_pb2.HOLD_STATUS_RELEASED,
        release_reason=ledger_pb2.RELEASE_REASON_EXPIRED,
    )
    as_json = stamp_json(stamp_record(hold))
    assert (as_json["status"], as_json["release_reason"], as_json["pdf_url"]) == ("released", "expired", None)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"GIF89a", "not a PDF"), (b"%PDF-1.7" + b"x" * 2000, "larger")],
)
def test_documents_are_checked_before_quota_is_touched(content: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        check_document(content, max_bytes=1000)
