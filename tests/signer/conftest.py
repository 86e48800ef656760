"""Shared pieces for signer tests: a PKI made in the test, the corpus, and the outside verifiers.

The outside verifiers are deliberately not ours: poppler's `pdfsig`, pyHanko's validator and
zbar's QR reader each read the stamped file their own way.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.signer.pki import DevPki, SigningIdentity, ensure_dev_pki, ephemeral_p256_identity
from tests.conftest import corpus_dir

from .hsm import Token, make_softhsm_token

SERIAL = "AB12CD34EF56GH78IJ90KL"
PUBLIC_URL = "https://meterai.example.id"


@dataclass(frozen=True)
class CorpusFile:
    name: str
    pages: int
    features: str


def corpus_files() -> list[CorpusFile]:
    """The manifest's PDFs, read at collection time; empty when the corpus is absent."""
    manifest = corpus_dir() / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [CorpusFile(row["file"], int(row["pages"]), row["features"]) for row in rows]


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def identity(dev_pki: DevPki) -> SigningIdentity:
    return dev_pki.load_identity()


@pytest.fixture(scope="session")
def trust_roots(dev_pki: DevPki) -> list[x509.Certificate]:
    return dev_pki.load_trust_roots()


@pytest.fixture(scope="session")
def ecdsa_pki() -> tuple[SigningIdentity, x509.Certificate]:
    """An ECDSA P-256 signer under its own root, for the non-RSA signing path."""
    return ephemeral_p256_identity("Test ECDSA")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@dataclass(frozen=True)
class PdfsigSignature:
    field_name: str
    valid: bool
    total_document: bool


def pdfsig(path: Path) -> list[PdfsigSignature]:
    """poppler's view of every signature in `path`."""
    output = subprocess.run(
        [require_tool("pdfsig"), str(path)], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    signatures = []
    for block in re.split(r"^Signature #\d+:$", output, flags=re.MULTILINE)[1:]:
        name = re.search(r"Signature Field Name: (.*)$", block, flags=re.MULTILINE)
        signatures.append(
            PdfsigSignature(
                field_name=name.group(1).strip() if name else "",
                valid="Signature Validation: Signature is Valid." in block,
                total_document="Total document signed" in block,
            )
        )
    return signatures


def decode_qr(pdf: Path, page: int, crop: tuple[float, float, float, float] | None = None) -> list[str]:
    """Render one page at 150 dpi (optionally only the box `crop`, in viewer points) and read QR codes.

    Returns "orientation data" strings, e.g. "UP https://...".
    """
    dpi = 150
    # -cropbox: render what a viewer shows; pdftoppm draws the whole media box by default.
    command = [require_tool("pdftoppm"), "-cropbox", "-r", str(dpi), "-png", "-f", str(page), "-l", str(page)]
    if crop is not None:
        # pdftoppm crops in pixels from the top-left; the box is in points from the bottom-left.
        llx, lly, urx, ury, *_ = crop
        height = _visible_height(pdf, page)
        scale = dpi / 72
        command += [
            "-x", str(int(llx * scale)),
            "-y", str(int((height - ury) * scale)),
            "-W", str(int((urx - llx) * scale) + 1),
            "-H", str(int((ury - lly) * scale) + 1),
        ]  # fmt: skip
    image = pdf.with_suffix(f".p{page}.png")
    rendered = subprocess.run([*command, str(pdf)], capture_output=True, timeout=60, check=True)
    image.write_bytes(rendered.stdout)
    xml = subprocess.run(
        [require_tool("zbarimg"), "--xml", "-q", "--nodbus", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    return [
        f"{orientation} {data}"
        for orientation, data in re.findall(r"orientation='(\w+)'><data><!\[CDATA\[(.*?)\]\]>", xml)
    ]


def _visible_height(pdf: Path, page: int) -> float:
    info = subprocess.run(
        [require_tool("pdfinfo"), "-f", str(page), "-l", str(page), str(pdf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    match = re.search(rf"Page\s+{page} size:\s+([\d.]+) x ([\d.]+)", info)
    rotation = re.search(rf"Page\s+{page} rot:\s+(\d+)", info)
    assert match is not None and rotation is not None, info
    width, height = float(match.group(1)), float(match.group(2))
    return width if int(rotation.group(1)) % 180 == 90 else height


@dataclass(frozen=True)
class TimestampAuthority:
    """A timestamp authority made in the test: its root, and a pyHanko timestamper signing as it."""

    root: x509.Certificate
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    def timestamper(self, at: dt.datetime | None = None) -> object:
        from asn1crypto import keys as asn1_keys
        from asn1crypto import x509 as asn1_x509
        from cryptography.hazmat.primitives import serialization
        from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

        def load(cert: x509.Certificate) -> asn1_x509.Certificate:
            return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))

        key = asn1_keys.PrivateKeyInfo.load(
            self.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return DummyTimeStamper(load(self.certificate), key, certs_to_embed=[load(self.root)], fixed_dt=at)


@pytest.fixture(scope="session")
def test_tsa() -> TimestampAuthority:
    """A timestamp authority under its own root (EKU timeStamping, critical, as RFC 3161 asks)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    # pyHanko's test timestamper signs with RSA only.
    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Timestamp Authority")]))
        .issuer_name(root_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return TimestampAuthority(root, certificate, tsa_key)


def pyhanko_signer(pki: DevPki) -> object:
    """pyHanko's signer for the development PKI's key: a second, independent signing engine."""
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    identity = pki.load_identity()
    chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in identity.chain]
    key = asn1_keys.PrivateKeyInfo.load(
        identity.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return signers.SimpleSigner(
        signing_cert=chain[0], signing_key=key, cert_registry=SimpleCertificateStore.from_certs(chain)
    )


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory, dev_pki: DevPki) -> Iterator[Token]:
    """A fresh SoftHSM2 token holding an RSA-3072 and a P-256 key (see hsm.py)."""
    yield from make_softhsm_token(tmp_path_factory, dev_pki)
