"""Hypothesis-built messages against the running stack's gRPC APIs: the distributor API on the
gateway (as a funded distributor) and the internal QuotaService and SignerService (as a service).

Every call must end OK or with a status a caller can act on, within its deadline: never INTERNAL,
UNKNOWN, UNAVAILABLE or DEADLINE_EXCEEDED (a hang). The distributor's quota may go down only by
the stamps that really succeeded: one per OK stamp, per OK batch item and per OK item of a
finished job.

CI runs a few dozen calls per API; EMETERAI_FUZZ_EXAMPLES=5000 the long version (docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emeterai.v1 import distributor_service_pb2, quota_service_pb2, signer_service_pb2
from emeterai.v1 import distributor_service_pb2 as dpb
from tests.hostile import UPLOAD_LIMIT, Hostile, fuzz_examples, message_strings, small_pdf

from .messages import messages

pytestmark = pytest.mark.e2e

WELL_DEFINED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ABORTED,
}
CALL_DEADLINE_S = 60

DISTRIBUTOR = distributor_service_pb2.DESCRIPTOR.services_by_name["DistributorService"]
QUOTA = quota_service_pb2.DESCRIPTOR.services_by_name["QuotaService"]
SIGNER = signer_service_pb2.DESCRIPTOR.services_by_name["SignerService"]
# Audit recomputes the whole ledger's hash chain on every call: a cost, not an input to fuzz.
QUOTA_METHODS = sorted(set(QUOTA.methods_by_name) - {"Audit"})

FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def documents() -> list[bytes]:
    pdf = small_pdf()
    return [
        b"",
        b"not a pdf",
        pdf,
        pdf[: len(pdf) // 2],
        b"%PDF-1.7\n" + b"\x00" * 1000,
        # Over the gateway's upload limit, and over gRPC's own 4 MiB message limit.
        pdf + b"%" * UPLOAD_LIMIT,
        b"%PDF-1.7\n" + b"\xff" * (5 * 1024 * 1024),
    ]


class Caller:
    """Calls any method of a service by its descriptor, with the given metadata."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._channel = channel
        self._metadata = metadata

    def call(
        self, method: MethodDescriptor, request: Message | list[Message]
    ) -> tuple[grpc.StatusCode, list[Any], str]:
        """(status, responses, details)."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        options = {
            "request_serializer": request_class.SerializeToString,
            "response_deserializer": response_class.FromString,
        }
        try:
            if method.client_streaming:
                assert isinstance(request, list)
                responses = self._channel.stream_stream(path, **options)(
                    iter(request), metadata=self._metadata, timeout=CALL_DEADLINE_S
                )
                return grpc.StatusCode.OK, list(responses), ""
            response = self._channel.unary_unary(path, **options)(
                request, metadata=self._metadata, timeout=CALL_DEADLINE_S
            )
            return grpc.StatusCode.OK, [response], ""
        except grpc.RpcError as error:
            return error.code(), [], error.details() or ""


def strings_of(request: Message | list[Message]) -> list[str]:
    requests = request if isinstance(request, list) else [request]
    return [text for item in requests for text in message_strings(item)]


def method_requests(
    service: Any, names: list[str], known: list[str]
) -> st.SearchStrategy[tuple[MethodDescriptor, Message | list[Message]]]:
    docs = documents()

    def for_method(name: str) -> st.SearchStrategy[tuple[MethodDescriptor, Any]]:
        method = service.methods_by_name[name]
        request = messages(method.input_type, documents=docs, known=known)
        if method.client_streaming:
            return st.tuples(st.just(method), st.lists(request, max_size=3))
        return st.tuples(st.just(method), request)

    return st.sampled_from(names).flatmap(for_method)


@pytest.fixture(scope="module")
def channel(hostile: Hostile) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(hostile.stack.grpc_address) as opened:
        yield opened


def known_ids(hostile: Hostile) -> list[str]:
    cast = hostile.cast
    return [
        cast.owner_stamp,
        cast.owner_order,
        cast.owner_serial,
        cast.distributor_stamp,
        cast.distributor_order,
        cast.distributor_customer,
        cast.distributor_job,
        cast.distributor.account_id,
        cast.distributor.client_id,
    ]


def test_distributor_api_answers_fuzzed_messages_with_well_defined_statuses(
    hostile: Hostile, channel: grpc.Channel
) -> None:
    distributor = hostile.cast.fuzzed_distributor
    before = hostile.distributor_balance(distributor)
    caller = Caller(channel, distributor.metadata)
    stamped = 0
    jobs: list[str] = []
    seen: dict[str, set[str]] = {}

    @settings(FUZZ_SETTINGS, max_examples=fuzz_examples(40))
    @given(call=method_requests(DISTRIBUTOR, sorted(DISTRIBUTOR.methods_by_name), known_ids(hostile)))
    def check(call: tuple[MethodDescriptor, Any]) -> None:
        nonlocal stamped
        method, request = call
        code, responses, details = caller.call(method, request)
        seen.setdefault(method.name, set()).add(code.name)
        hostile.leaks.check(f"{method.name} -> {code.name}", details, strings_of(request))
        assert code in WELL_DEFINED, (method.name, code, details, str(request)[:500])
        if code != grpc.StatusCode.OK:
            return
        if method.name == "StampDocument":
            stamped += 1
        elif method.name == "BatchStamp":
            stamped += sum(1 for r in responses if r.code == 0)
            assert all(r.code != grpc.StatusCode.INTERNAL.value[0] for r in responses), responses
        elif method.name == "SubmitStampJob":
            jobs.append(responses[0].job_id)
        elif method.name == "IssueToken":
            raise AssertionError("fuzzed client credentials were accepted")

    check()
    stamped += _stamped_by_jobs(hostile, caller, set(jobs))
    after = hostile.distributor_balance(distributor)
    assert after.consumed - before.consumed == stamped, (before, after, stamped)
    assert after.held == 0
    assert before.available - after.available == stamped
    assert len(seen) >= 5, seen


def _stamped_by_jobs(hostile: Hostile, caller: Caller, jobs: set[str]) -> int:
    """Stamps the jobs accepted during the run made, once they are done (bounded wait)."""
    method = DISTRIBUTOR.methods_by_name["GetStampJob"]
    stamped = 0
    for job_id in jobs:
        deadline = time.monotonic() + 120
        while True:
            code, responses, details = caller.call(method, dpb.GetStampJobRequest(job_id=job_id))
            assert code == grpc.StatusCode.OK, details
            job = responses[0]
            if job.status == dpb.STAMP_JOB_STATUS_DONE:
                break
            assert time.monotonic() < deadline, f"job {job_id} did not finish"
            time.sleep(0.5)
        assert all(r.code != grpc.StatusCode.INTERNAL.value[0] for r in job.results), job.results
        stamped += sum(1 for r in job.results if r.code == 0)
    return stamped


def test_internal_services_answer_fuzzed_messages_with_well_defined_statuses(hostile: Hostile) -> None:
    metadata = (("authorization", f"Bearer {hostile.cast.service_token}"),)
    owner_before = hostile.balance(hostile.cast.owner)
    with (
        grpc.insecure_channel(hostile.internal_address("quota")) as quota_channel,
        grpc.insecure_channel(hostile.internal_address("signer")) as signer_channel,
    ):
        callers = {QUOTA.name: Caller(quota_channel, metadata), SIGNER.name: Caller(signer_channel, metadata)}
        known = known_ids(hostile)
        calls = st.one_of(
            method_requests(QUOTA, QUOTA_METHODS, known),
            method_requests(SIGNER, sorted(SIGNER.methods_by_name), known),
        )

        @settings(FUZZ_SETTINGS, max_examples=fuzz_examples(40))
        @given(call=calls)
        def check(call: tuple[MethodDescriptor, Any]) -> None:
            method, request = call
            code, _, details = callers[method.containing_service.name].call(method, request)
            hostile.leaks.check(f"{method.name} -> {code.name}", details, strings_of(request))
            assert code in WELL_DEFINED, (method.full_name, code, details, str(request)[:500])

        check()
    # The fuzzer knows the owner's ids, not how to spend the owner's quota legitimately.
    owner_after = hostile.balance(hostile.cast.owner)
    assert (owner_after["consumed"], owner_after["held"]) == (owner_before["consumed"], owner_before["held"])
