"""A distributor's stamp rate over gRPC, on the whole stack (`emeterai up`) with a small bucket:
every document takes a token, whichever RPC carries it, and one over the rate costs nothing; one
refused for capacity keeps its token."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emeterai.v1 import common_pb2
from emeterai.v1 import distributor_service_pb2 as dpb
from services.common.errors import RETRY_AFTER_TRAILER
from tests.conftest import require_corpus
from tests.e2e.local_stack import RunningStack, funded_distributor, running_stack

# Two stamps saved up, and a refill too slow to matter while the test runs (one per 100 s).
LIMITS = {"EMETERAI_DISTRIBUTOR_STAMP_BURST": "2", "EMETERAI_DISTRIBUTOR_STAMPS_PER_S": "0.01"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("limited-stack"), environment=LIMITS) as running:
        yield running


def _stamp_request(document: bytes, key: str) -> dpb.StampDocumentRequest:
    return dpb.StampDocumentRequest(
        document=document, placement=common_pb2.StampPlacement(page=1), idempotency_key=key
    )


def _batch(document: bytes, count: int) -> Iterator[dpb.BatchStampRequest]:
    """`count` copies of the document under keys of their own, as one BatchStamp stream."""
    for i in range(count):
        yield dpb.BatchStampRequest(client_ref=f"ref-{i}", document=_stamp_request(document, f"b-{i}"))


def test_a_batch_stream_takes_a_token_per_document_and_says_when_to_send_the_rest_again(
    stack: RunningStack,
) -> None:
    document = (require_corpus() / "sf-001-minimal-document.pdf").read_bytes()
    api, auth = funded_distributor(stack, "PT Batas Laju", 5)
    results = list(api.BatchStamp(_batch(document, 3), metadata=auth, timeout=120))
    # Every document has its result; the stream itself is not refused.
    assert sorted(r.client_ref for r in results) == ["ref-0", "ref-1", "ref-2"]
    stamped = [r for r in results if r.code == grpc.StatusCode.OK.value[0]]
    refused = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert (len(stamped), len(refused)) == (2, 1), results
    assert "faster than allowed" in refused[0].message
    assert refused[0].retry_after.seconds >= 1 and not refused[0].stamped_document

    # The bucket is empty for StampDocument too: refused with the wait, as RetryInfo and trailer.
    with pytest.raises(grpc.RpcError) as caught:
        api.StampDocument(_stamp_request(document, "single"), metadata=auth, timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    retry = error_details_pb2.RetryInfo()
    assert status is not None and status.details[0].Unpack(retry) and retry.retry_delay.seconds >= 1
    assert RETRY_AFTER_TRAILER in dict(caught.value.trailing_metadata())

    # What was refused cost nothing.
    balance = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
    assert (balance.available, balance.held, balance.consumed) == (3, 0, 2)


def test_a_document_refused_for_capacity_keeps_its_token_for_when_it_is_sent_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One stamp at a time and no distributor queue: of a batch's documents holding tokens, all but
    the one stamping are refused for capacity, and give their tokens back. Two tokens in the
    bucket: the stamp spends one, and one is left whatever the others did."""
    one_slot = LIMITS | {
        "EMETERAI_STAMP_CONCURRENCY_MAX": "1",
        "EMETERAI_DISTRIBUTOR_STAMP_QUEUE": "0",
        # No token comes back by itself while the big document is signed twice (one per 10 000 s).
        "EMETERAI_DISTRIBUTOR_STAMPS_PER_S": "0.0001",
    }
    # Long enough to sign that the batch's other documents arrive while it holds the slot.
    document = (require_corpus() / "sf-009-geotopo-117p.pdf").read_bytes()
    with running_stack(tmp_path_factory.mktemp("one-slot-stack"), environment=one_slot) as stack:
        api, auth = funded_distributor(stack, "PT Satu Slot", 5)
        results = list(api.BatchStamp(_batch(document, 3), metadata=auth, timeout=120))
        stamped = [r for r in results if r.code == grpc.StatusCode.OK.value[0]]
        refused = [r for r in results if r.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
        assert (len(stamped), len(refused)) == (1, 2), results
        # Refused for capacity, with the wait; the third document, depending on when it came, took a
        # token given back (and was refused for capacity too) or found none.
        at_capacity = [r for r in refused if r.message.startswith("stamping is at capacity")]
        assert at_capacity and all(r.retry_after.seconds >= 1 for r in at_capacity), refused
        assert all(r in at_capacity or "faster than allowed" in r.message for r in refused), refused
        # The capacity refusal's token is back: sent again, the document stamps.
        again = api.StampDocument(_stamp_request(document, "again"), metadata=auth, timeout=120)
        assert again.stamp.serial
        with pytest.raises(grpc.RpcError) as spent:
            api.StampDocument(_stamp_request(document, "more"), metadata=auth, timeout=120)
        assert spent.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "faster than allowed" in (spent.value.details() or "")
        balance = api.GetBalance(dpb.DistributorServiceGetBalanceRequest(), metadata=auth).balance
        assert (balance.available, balance.held, balance.consumed) == (3, 0, 2)
