"""Stamps per second on one core: our signer against tuned pyHanko, on the same PDFs, in one run.

    .venv/bin/python bench/signer.py [--corpus DIR] [--quick]

Every corpus file is stamped repeatedly (for about --seconds, at most --iterations times) by
our signer with RSA-3072 and with ECDSA P-256, and by pyHanko with the same RSA-3072 key. A
file's rate is 1 / the median time of one stamp; a size class's rate is the median over its
files (small: <= 100 KB; large: > 1 MB or > 100 pages; medium: the rest).

pyHanko is tuned as a fair reference: the signer is loaded once, /Contents has a fixed size,
the stamp is a visible QR stamp, PAdES B-B (ETSI.CAdES.detached). pyHanko is a test and bench
dependency only.

Memory is measured for our signer before pyHanko is imported, so the RSS is the signer's own:
the Python heap peak of one stamp over the input's size (tracemalloc, the input allocated
before tracing), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import logging
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

from services.common.errors import DomainError  # noqa: E402
from services.signer.pki import DevPki, SigningIdentity, ensure_dev_pki, ephemeral_p256_identity  # noqa: E402
from services.signer.placement import Placement  # noqa: E402
from services.signer.stamping import place_stamp  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared/corpus/pdf"
SERIAL = "AB12CD34EF56GH78IJ90KL"
PUBLIC_URL = "https://meterai.example.id"
SMALL_BYTES = 100 * 1024
LARGE_BYTES = 1024 * 1024
LARGE_PAGES = 100
CONTENTS_BYTES = 16 * 1024
MIB = 1024 * 1024


@dataclass
class Sample:
    path: Path
    size: int
    pages: int
    rates: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    heap_over_input: float | None = None

    @property
    def size_class(self) -> str:
        if self.size > LARGE_BYTES or self.pages > LARGE_PAGES:
            return "large"
        return "small" if self.size <= SMALL_BYTES else "medium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--quick", action="store_true", help="two small files, a few stamps each")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per file and signer")
    parser.add_argument("--iterations", type=int, default=300, help="most stamps per file and signer")
    args = parser.parse_args()
    # Damaged corpus files make the readers log their repairs; the table is what matters here.
    for noisy in ("pypdf", "pyhanko", "services"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    seconds, iterations = (0.05, 5) if args.quick else (args.seconds, args.iterations)

    samples = _samples(args.corpus)
    if args.quick:
        samples = [s for s in samples if s.size_class == "small"][:2]
    if not samples:
        sys.exit(f"no PDFs in {args.corpus}")

    with tempfile.TemporaryDirectory() as directory:
        pki = ensure_dev_pki(Path(directory) / "pki")
        rsa_identity = pki.load_identity()
        p256_identity = _p256_identity()
        signing_time = dt.datetime.now(dt.UTC)

        def ours(identity: SigningIdentity) -> Callable[[bytes], object]:
            return lambda document: place_stamp(
                document,
                serial=SERIAL,
                placement=Placement(),
                identity=identity,
                public_url=PUBLIC_URL,
                signing_time=signing_time,
            )

        for sample in samples:
            document = sample.path.read_bytes()
            for name, stamp in (("ours_rsa", ours(rsa_identity)), ("ours_p256", ours(p256_identity))):
                _measure(sample, name, stamp, document, seconds, iterations)
            if "ours_rsa" in sample.rates:
                sample.heap_over_input = _heap_over_input(ours(rsa_identity), document)
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        pyhanko_stamp = _tuned_pyhanko(pki)
        for sample in samples:
            _measure(sample, "pyhanko_rsa", pyhanko_stamp, sample.path.read_bytes(), seconds, iterations)

    _report(samples, rss_mib)


def _samples(corpus: Path) -> list[Sample]:
    pages: dict[str, int] = {}
    manifest = corpus / "MANIFEST.tsv"
    if manifest.exists():
        with manifest.open(newline="") as handle:
            pages = {row["file"]: int(row["pages"]) for row in csv.DictReader(handle, delimiter="\t")}
    samples = []
    for path in sorted(corpus.glob("*.pdf")):
        samples.append(Sample(path, path.stat().st_size, pages.get(path.name) or _count_pages(path)))
    return samples


def _count_pages(path: Path) -> int:
    from pypdf import PdfReader

    try:
        return len(PdfReader(path, strict=False).pages)
    except Exception:  # an unreadable file is reported when stamping it
        return 0


def _measure(
    sample: Sample,
    name: str,
    stamp: Callable[[bytes], object],
    document: bytes,
    seconds: float,
    iterations: int,
) -> None:
    try:
        stamp(document)  # warm-up, and the refusal check
    except DomainError as exc:
        sample.skipped[name] = f"refused: {type(exc).__name__}"
        return
    except Exception as exc:  # pyHanko's failures on real-world files are part of the comparison
        sample.skipped[name] = f"failed: {type(exc).__name__}"
        return
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < iterations and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        stamp(document)
        times.append(time.perf_counter() - started)
    sample.rates[name] = 1 / statistics.median(times)


def _heap_over_input(stamp: Callable[[bytes], object], document: bytes) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = stamp(document)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return (peak - len(document)) / MIB


def _p256_identity() -> SigningIdentity:
    """A P-256 signer under its own root, made for this run."""
    return ephemeral_p256_identity("Bench P-256", days=1)[0]


def _tuned_pyhanko(pki: DevPki) -> Callable[[bytes], object]:
    """pyHanko as we would tune it: key loaded once, fixed /Contents size, visible QR stamp, B-B."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.stamp import QRStampStyle, TextStampStyle

    chain_dir = pki.directory / "bench-pyhanko"
    chain_dir.mkdir(exist_ok=True)
    pem_chain = pki.signer_chain_path.read_bytes()
    certificates = x509.load_pem_x509_certificates(pem_chain)
    leaf_path, ca_path = chain_dir / "leaf.pem", chain_dir / "cas.pem"
    leaf_path.write_bytes(certificates[0].public_bytes(serialization.Encoding.PEM))
    ca_path.write_bytes(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates[1:]))
    signer = signers.SimpleSigner.load(
        str(pki.signer_key_path), str(leaf_path), ca_chain_files=(str(ca_path),)
    )
    # SimpleSigner parses (and so re-validates) the private key on every signature; a server
    # would keep it loaded, as ours does.
    key = serialization.load_pem_private_key(pki.signer_key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)

    def sign_raw(data: bytes, digest_algorithm: str) -> bytes:
        assert digest_algorithm == "sha256"
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    signer.sign_raw = sign_raw  # type: ignore[method-assign]
    style: TextStampStyle = QRStampStyle(stamp_text="METERAI ELEKTRONIK\n10000\n%(serial)s")
    try:
        import qrcode  # noqa: F401  # pyHanko's QR stamps need it (the pyhanko[qr] extra)
    except ImportError:
        print("pyHanko: the qrcode package is missing, so its stamp is text only (faster than with a QR)")
        style = TextStampStyle(stamp_text="METERAI ELEKTRONIK\n10000\n%(serial)s\n%(url)s")
    url = f"{PUBLIC_URL}/v/{SERIAL}"

    def stamp(document: bytes) -> bytes:
        writer = IncrementalPdfFileWriter(io.BytesIO(document), strict=False)
        pdf_signer = signers.PdfSigner(
            signers.PdfSignatureMetadata(
                field_name=f"e-meterai {SERIAL}",
                md_algorithm="sha256",
                subfilter=fields.SigSeedSubFilter.PADES,
                reason=f"[{SERIAL}] Meterai elektronik",
            ),
            signer=signer,
            stamp_style=style,
            new_field_spec=fields.SigFieldSpec(f"e-meterai {SERIAL}", on_page=-1, box=(400, 36, 500, 136)),
        )
        out = pdf_signer.sign_pdf(
            writer,
            bytes_reserved=CONTENTS_BYTES,
            appearance_text_params={"url": url, "serial": SERIAL},
        )
        return out.getvalue()

    return stamp


def _report(samples: list[Sample], rss_mib: float) -> None:
    columns = ("ours_rsa", "ours_p256", "pyhanko_rsa")
    print(
        f"{'file':38} {'KB':>7} {'pages':>5} {'class':>6} "
        + " ".join(f"{c:>11}" for c in columns)
        + "  heap+"
    )
    for sample in samples:
        cells = [f"{sample.rates[c]:11.1f}" if c in sample.rates else f"{'-':>11}" for c in columns]
        heap = f"{sample.heap_over_input:5.2f}" if sample.heap_over_input is not None else "    -"
        print(
            f"{sample.path.name[:38]:38} {sample.size / 1024:7.0f} {sample.pages:5d} {sample.size_class:>6} "
            + " ".join(cells)
            + f"  {heap}"
        )
    for sample in samples:
        for name, reason in sample.skipped.items():
            print(f"skipped {sample.path.name} for {name}: {reason}")

    print()
    print(f"{'median stamps/s per core':38} " + " ".join(f"{c:>11}" for c in columns))
    medians: dict[tuple[str, str], float] = {}
    for size_class in ("small", "medium", "large"):
        cells = []
        for column in columns:
            rates = [s.rates[column] for s in samples if s.size_class == size_class and column in s.rates]
            medians[(size_class, column)] = statistics.median(rates) if rates else 0.0
            cells.append(f"{medians[(size_class, column)]:11.1f}" if rates else f"{'-':>11}")
        print(f"{size_class:38} " + " ".join(cells))
    heaps = [s.heap_over_input for s in samples if s.heap_over_input is not None]
    heap_over_input = max(heaps) if heaps else 0.0
    print(f"\nPython heap peak over input size (max over files): {heap_over_input:.2f} MiB")
    print(f"signer process peak RSS (before pyHanko was loaded): {rss_mib:.1f} MiB")
    print(
        "RESULT"
        f" ours_small_rsa={medians[('small', 'ours_rsa')]:.1f}"
        f" ours_large_rsa={medians[('large', 'ours_rsa')]:.1f}"
        f" ours_small_p256={medians[('small', 'ours_p256')]:.1f}"
        f" pyhanko_small_rsa={medians[('small', 'pyhanko_rsa')]:.1f}"
        f" pyhanko_large_rsa={medians[('large', 'pyhanko_rsa')]:.1f}"
        f" heap_over_input_mib={heap_over_input:.2f}"
        f" rss_mib={rss_mib:.1f}"
    )


if __name__ == "__main__":
    main()
