"""Mutated corpus PDFs, fed to `place_stamp` (the signer's domain entry point) and to the running
signer over gRPC.

Every mutation ends in one of two ways: a stamped PDF of which the mutated original is an untouched
prefix, or `UnsupportedPdf`/`InvalidPlacement` with a message (the domain's bad-input errors, which
the signer maps to INVALID_ARGUMENT). Any other exception is a bug, and so is a document that takes
longer than DOCUMENT_BOUND_S: place_stamp runs here without the worker pool's time limit, under an
alarm that interrupts it. A sample of the stamped results is checked with poppler's pdfsig.

CI runs a few dozen examples; EMETERAI_FUZZ_EXAMPLES=5000 runs the long version (docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emeterai.v1 import common_pb2, signer_service_pb2, signer_service_pb2_grpc
from services.common.errors import InvalidInput
from services.signer.errors import InvalidPlacement, UnsupportedPdf
from services.signer.pki import DevPki, SigningIdentity, ensure_dev_pki
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from tests.conftest import require_corpus
from tests.hostile import Hostile, fuzz_examples

SERIAL = "AB12CD34EF56GH78IJ90KL"
# Small files of every structure: xref streams and object streams, classic tables, hybrid,
# compacted syntax, encrypted, already signed, forms.
SEEDS = [
    "sf-001-minimal-document.pdf",
    "sf-002-libreoffice-writer.pdf",
    "sf-005-encrypted-password.pdf",
    "sf-008-reportlab-inline-image.pdf",
    "sf-010-pdflatex-forms.pdf",
    "sf-013-reportlab-overlay.pdf",
    "sf-020-xmp-pymupdf.pdf",
    "sf-024-annotations.pdf",
    "ph-hybrid-xref.pdf",
    "ph-compacted-syntax.pdf",
    "ph-signed-pades-lta-dss.pdf",
]
# Far longer than any of these files takes to stamp on a slow machine, far shorter than a hang.
DOCUMENT_BOUND_S = 20.0
PDFSIG_SAMPLE = 3


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the reader swallows it."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds`, restoring pytest-timeout's own alarm afterwards."""

    def expired(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            left = max(outer_delay - (time.monotonic() - started), 0.01)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    corpus = require_corpus()
    return {name: (corpus / name).read_bytes() for name in SEEDS}


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    pki: DevPki = ensure_dev_pki(tmp_path_factory.mktemp("pki"))
    return pki.load_identity()


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # pypdf warns at length about every broken file.
    caplog.set_level(logging.CRITICAL)


# ---------------------------------------------------------------------------------------------
# Mutations

_NUMBER = re.compile(rb"(?<![\w.])\d+(?![\w.])")
huge_numbers = st.sampled_from(
    [
        b"0",
        b"-1",
        b"-2147483649",
        b"2147483648",
        b"4294967296",
        b"9" * 20,
        b"9" * 400,
        b"1e308",
        b"-0.0",
        b"NaN",
    ]
)


@st.composite
def byte_flips(draw: st.DrawFn, document: bytes) -> bytes:
    data = bytearray(document)
    for _ in range(draw(st.integers(1, 16))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def truncation(draw: st.DrawFn, document: bytes) -> bytes:
    keep = draw(st.integers(0, len(document) - 1))
    # Cut, and sometimes put a plausible trailer back, so the file gets past the first checks.
    tail = draw(st.sampled_from([b"", b"\nstartxref\n0\n%%EOF\n", document[-64:]]))
    return document[:keep] + tail


@st.composite
def splice(draw: st.DrawFn, document: bytes, other: bytes) -> bytes:
    return document[: draw(st.integers(0, len(document)))] + other[draw(st.integers(0, len(other))) :]


@st.composite
def xref_damage(draw: st.DrawFn, document: bytes) -> bytes:
    kind = draw(st.sampled_from(["startxref", "size", "prev", "root", "xref-row", "trailer"]))
    number = draw(huge_numbers)
    if kind == "startxref":
        return re.sub(rb"startxref\s+\d+", b"startxref\n" + number, document)
    if kind == "size":
        return re.sub(rb"/Size\s+\d+", b"/Size " + number, document)
    if kind == "prev":
        return re.sub(rb"(/Root\s+\d+\s+\d+\s+R)", rb"\1 /Prev " + number, document, count=1)
    if kind == "root":
        return re.sub(rb"/Root\s+\d+\s+\d+\s+R", b"/Root " + number + b" 0 R", document)
    if kind == "xref-row":
        rows = list(re.finditer(rb"\d{10} \d{5} [nf]", document))
        if not rows:
            return document
        row = rows[draw(st.integers(0, len(rows) - 1))]
        garbage = draw(st.binary(min_size=18, max_size=18))
        return document[: row.start()] + garbage + document[row.end() :]
    return document.replace(b"trailer", b"trailer " + draw(st.binary(max_size=64)), 1)


@st.composite
def huge_numbers_everywhere(draw: st.DrawFn, document: bytes) -> bytes:
    numbers = list(_NUMBER.finditer(document[:200_000]))
    if not numbers:
        return document
    data = document
    for _ in range(draw(st.integers(1, 8))):
        found = numbers[draw(st.integers(0, len(numbers) - 1))]
        replacement = draw(huge_numbers)
        data = data[: found.start()] + replacement.ljust(found.end() - found.start()) + data[found.end() :]
    return data


@st.composite
def deep_nesting(draw: st.DrawFn, document: bytes) -> bytes:
    depth = draw(st.sampled_from([64, 1000, 20_000, 200_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b"<< /A ", b" >>"), (b"<<", b"")]))
    nested = opener * depth + closer * depth
    at = draw(st.sampled_from([b"/Type /Catalog", b"/Type /Page", b"/Type/Catalog", b"trailer", b"obj"]))
    if at not in document:
        return document + b"\n1 0 obj\n" + nested + b"\nendobj\n"
    return document.replace(at, at + b" /Deep " + nested, 1)


@st.composite
def object_stream_garbage(draw: st.DrawFn, document: bytes) -> bytes:
    streams = list(re.finditer(rb"stream\r?\n", document))
    if not streams:
        return document
    start = streams[draw(st.integers(0, len(streams) - 1))].end()
    end = document.find(b"endstream", start)
    if end < 0:
        return document
    garbage = draw(
        st.one_of(
            st.binary(max_size=end - start),
            st.binary(max_size=256).map(zlib.compress),
            st.just(zlib.compress(b"1 0 2 5 " + b"<<" * 5000)),
            st.just(zlib.compress(b"\x00" * (1 << 20), 9)[: end - start]),
        )
    )
    return document[:start] + garbage.ljust(end - start, b" ") + document[end:]


@st.composite
def mutated_pdf(draw: st.DrawFn, seeds: dict[str, bytes]) -> bytes:
    name = draw(st.sampled_from(sorted(seeds)))
    document = seeds[name]
    mutation = draw(
        st.sampled_from(["flips", "truncation", "splice", "xref", "numbers", "nesting", "streams", "stacked"])
    )
    if mutation == "flips":
        return draw(byte_flips(document))
    if mutation == "truncation":
        return draw(truncation(document))
    if mutation == "splice":
        return draw(splice(document, seeds[draw(st.sampled_from(sorted(seeds)))]))
    if mutation == "xref":
        return draw(xref_damage(document))
    if mutation == "numbers":
        return draw(huge_numbers_everywhere(document))
    if mutation == "nesting":
        return draw(deep_nesting(document))
    if mutation == "streams":
        return draw(object_stream_garbage(document))
    return draw(byte_flips(draw(xref_damage(draw(object_stream_garbage(document))))))


placements = st.one_of(
    st.just(Placement()),
    st.builds(
        Placement,
        page=st.integers(-(2**31), 2**31),
        rect=st.one_of(
            st.none(),
            st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 4),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------
# Tests


def _pdfsig_valid(path: Path) -> bool:
    report = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60).stdout
    return "Signature is Valid." in report


class Outcomes:
    stamped = 0
    refused = 0
    checked_with_pdfsig = 0


def stamp_or_refusal(document: bytes, placement: Placement, identity: SigningIdentity) -> bytes | None:
    """The stamped document, or None when it was refused as the domain refuses bad input."""
    try:
        with time_bound(DOCUMENT_BOUND_S):
            result = place_stamp(
                document,
                serial=SERIAL,
                placement=placement,
                identity=identity,
                public_url="https://meterai.example.id",
            )
    except (UnsupportedPdf, InvalidPlacement) as refused:
        assert refused.message and "Traceback" not in refused.message
        return None
    return result.stamped_document


@pytest.mark.parametrize("with_placement", [False, True], ids=["default-placement", "fuzzed-placement"])
def test_mutated_pdfs_are_stamped_or_refused_cleanly(
    seeds: dict[str, bytes], identity: SigningIdentity, tmp_path: Path, with_placement: bool
) -> None:
    outcomes = Outcomes()

    @settings(
        max_examples=fuzz_examples(20),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(document=mutated_pdf(seeds), placement=placements if with_placement else st.just(Placement()))
    def check(document: bytes, placement: Placement) -> None:
        stamped = stamp_or_refusal(document, placement, identity)
        if stamped is None:
            outcomes.refused += 1
            return
        outcomes.stamped += 1
        assert stamped.startswith(document), "the original bytes must be an untouched prefix"
        if outcomes.checked_with_pdfsig < PDFSIG_SAMPLE and b"/Encrypt" not in document:
            outcomes.checked_with_pdfsig += 1
            path = tmp_path / f"stamped-{outcomes.stamped}.pdf"
            path.write_bytes(stamped)
            assert _pdfsig_valid(path), f"pdfsig does not verify the stamp on {path}"

    check()
    # Both kinds of answer happen, or the mutations are not doing their job.
    print(f"stamped {outcomes.stamped}, refused {outcomes.refused}")
    assert outcomes.refused > 0


def test_the_time_bound_interrupts_a_hang() -> None:
    # A document that never finishes, as a hostile one can: the bound must interrupt it.
    spins = 0
    with pytest.raises(Hang), time_bound(0.2):
        while True:
            spins += 1
    assert spins > 0


@pytest.mark.e2e
def test_mutated_pdfs_through_the_signer_service_are_invalid_argument(
    hostile: Hostile, seeds: dict[str, bytes]
) -> None:
    # The real signer process: its worker pool, its time limit, its error mapping.
    address = hostile.internal_address("signer")
    metadata = (("authorization", f"Bearer {hostile.cast.service_token}"),)
    codes: list[grpc.StatusCode] = []

    with grpc.insecure_channel(address) as channel:
        stub = signer_service_pb2_grpc.SignerServiceStub(channel)

        @settings(max_examples=fuzz_examples(8), deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
        @given(
            document=mutated_pdf(seeds),
            page=st.sampled_from([0, 1, 2, 99, 2**32 - 1]) | st.integers(0, 2**32 - 1),
        )
        def check(document: bytes, page: int) -> None:
            request = signer_service_pb2.StampRequest(
                document=document, serial=SERIAL, placement=common_pb2.StampPlacement(page=page)
            )
            try:
                stamped = stub.Stamp(request, metadata=metadata, timeout=60)
            except grpc.RpcError as error:
                hostile.leaks.check_rpc_error("SignerService/Stamp", error)
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
                codes.append(error.code())
                return
            assert stamped.stamped_document.startswith(document)
            codes.append(grpc.StatusCode.OK)

        check()
    assert codes


def test_refusals_are_the_domains_bad_input_errors() -> None:
    # What the tests above accept as a refusal is exactly what the signer maps to INVALID_ARGUMENT.
    assert issubclass(UnsupportedPdf, InvalidInput) and issubclass(InvalidPlacement, InvalidInput)
