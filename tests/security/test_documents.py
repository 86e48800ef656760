"""Path traversal through document, stamp and job ids: nothing is ever read outside the stores.

Ids arrive in URLs and RPC fields. The stores take only plain ids as file names; the routes look a
stamp up in the ledger (as the caller's) before its file. Each attack is tried against a canary file
placed beside the document store, and against the owner's real document from another account.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import grpc
import pytest

from emeterai.v1 import distributor_service_pb2 as dpb
from services.common.errors import InvalidInput, NotFound
from services.gateway.documents import LocalDocumentStore
from services.gateway.job_store import LocalJobStore
from tests.hostile import Hostile, rpc_code

CANARY = b"%PDF-1.7 canary: outside the document store"

# Raw ids; each is also sent percent-encoded once and twice.
TRAVERSALS = [
    "../canary",
    "../../canary",
    "../documents/../canary",
    "..\\canary",
    "/etc/passwd",
    "/proc/self/environ",
    "....//canary",
    "..%2fcanary",
    "%2e%2e%2fcanary",
    "\u2025/canary",
    "..\u2215canary",
    "canary\x00.pdf",
    "\x00",
    "",
    ".",
    "..",
    "~",
    "a" * 4096,
]


def encodings(raw: str) -> list[str]:
    # Dots too, or the client would resolve "." and ".." segments before sending.
    once = urllib.parse.quote(raw, safe="").replace(".", "%2E")
    return [once, urllib.parse.quote(once, safe="")]


@pytest.fixture(scope="module")
def canary(hostile: Hostile) -> Path:
    path = hostile.stack.data_dir / "canary.pdf"
    path.write_bytes(CANARY)
    return path


def _no_canary(body: bytes) -> None:
    assert b"canary: outside" not in body
    assert b"root:" not in body
    assert b"EMETERAI_" not in body


@pytest.mark.e2e
def test_traversal_in_http_ids_is_a_4xx_and_reads_nothing(hostile: Hostile, canary: Path) -> None:
    owner, other = hostile.cast.owner, hostile.cast.other
    templates = ["/v1/stamps/{}", "/v1/stamps/{}/pdf", "/v1/orders/{}", "/v1/serials/{}", "/static/{}"]
    # An empty id is the list's route with a slash: a redirect to the list, not a lookup.
    for raw in [t for t in TRAVERSALS if t]:
        for encoded in encodings(raw):
            for template in templates:
                for caller in (owner, other):
                    response = hostile.http.get(template.format(encoded), headers=caller)
                    assert 400 <= response.status_code < 500, (
                        template,
                        raw,
                        response.status_code,
                        response.text,
                    )
                    _no_canary(response.content)
                    assert not response.content.startswith(b"%PDF")


@pytest.mark.e2e
def test_another_account_cannot_reach_the_owners_document_by_any_spelling(hostile: Hostile) -> None:
    stamp = hostile.cast.owner_stamp
    own = hostile.http.get(f"/v1/stamps/{stamp}/pdf", headers=hostile.cast.owner)
    assert own.status_code == 200 and own.content.startswith(b"%PDF")
    spellings = [
        stamp,
        f"{stamp}.pdf",
        f"../documents/{stamp}",
        f"{stamp}/../{stamp}",
        f"./{stamp}",
        stamp.upper(),
        f"{stamp}\x00",
        f"{stamp}\n",
        f" {stamp}",
    ]
    for spelling in spellings:
        for encoded in encodings(spelling):
            response = hostile.http.get(f"/v1/stamps/{encoded}/pdf", headers=hostile.cast.other)
            assert response.status_code in (400, 404), (spelling, response.status_code)
            assert own.content not in response.content


@pytest.mark.e2e
def test_traversal_in_rpc_ids_is_refused_and_reads_nothing(hostile: Hostile, canary: Path) -> None:
    api = hostile.distributor_api
    metadata = hostile.cast.distributor.metadata
    refusals = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
    for raw in [*TRAVERSALS, f"../documents/{hostile.cast.owner_stamp}", hostile.cast.owner_stamp]:
        calls = {
            "DownloadStampedDocument": lambda r=raw: api.DownloadStampedDocument(
                dpb.DownloadStampedDocumentRequest(stamp_id=r), metadata=metadata, timeout=30
            ),
            "GetStamp": lambda r=raw: api.GetStamp(
                dpb.GetStampRequest(stamp_id=r), metadata=metadata, timeout=30
            ),
            "GetStampJob": lambda r=raw: api.GetStampJob(
                dpb.GetStampJobRequest(job_id=r), metadata=metadata, timeout=30
            ),
            "GetOrder": lambda r=raw: api.GetOrder(
                dpb.DistributorServiceGetOrderRequest(order_id=r), metadata=metadata, timeout=30
            ),
        }
        for name, call in calls.items():
            assert rpc_code(call, hostile.leaks, name) in refusals, (name, raw)


@pytest.mark.parametrize("raw", [*TRAVERSALS, "abc\n", "abc\r\n", "abc/def", "abc.pdf"])
def test_the_document_store_takes_only_plain_ids(tmp_path: Path, raw: str) -> None:
    store = LocalDocumentStore(tmp_path / "documents")
    (tmp_path / "canary.pdf").write_bytes(CANARY)
    with pytest.raises(InvalidInput):
        store.get(raw)
    with pytest.raises(InvalidInput):
        store.put(raw, b"%PDF-1.7 written")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["canary.pdf", "documents"]


@pytest.mark.parametrize("raw", [*TRAVERSALS, "job_" + "0" * 32 + "\n", "job_../" + "0" * 28])
def test_the_job_store_takes_only_job_ids(tmp_path: Path, raw: str) -> None:
    store = LocalJobStore(tmp_path / "jobs")
    (tmp_path / "canary.json").write_bytes(b"{}")
    assert store.find(raw) is None
    with pytest.raises(NotFound):
        store.documents(raw)
    store.drop_documents("job_" + "0" * 32)
    assert (tmp_path / "canary.json").exists()
    with pytest.raises(NotFound):
        store.drop_documents(raw)
    assert (tmp_path / "canary.json").exists()
