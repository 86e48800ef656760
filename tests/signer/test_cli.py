"""`emeterai sign` and `emeterai verify`, run as a user would, with no service running."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.cli import main
from services.signer.pki import DevPki, SigningIdentity, ensure_dev_pki
from services.signer.tsa import TimestampAuthority
from services.signer.tsa_http import build_app
from tests.conftest import require_corpus

from .conftest import SERIAL
from .test_tsa_http import serve_in_thread

REPORT_KEYS = {
    "field_name", "serial", "kind", "valid", "signature_valid", "document_intact", "covers_whole_document",
    "revision", "later_changes", "later_revisions", "chain_trusted", "signer_subject", "sub_filter",
    "signed_at", "has_timestamp", "timestamp_valid", "timestamp_time", "timestamp_authority", "problems",
}  # fmt: skip


@pytest.fixture
def data_dir(dev_pki: DevPki, tmp_path: Path) -> Path:
    """A data directory holding the session's development PKI, as `emeterai up` leaves one."""
    shutil.copytree(dev_pki.directory, tmp_path / "data" / "pki")
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(exited.value.code or 0), out, err


def sign(capsys: pytest.CaptureFixture[str], data_dir: Path, source: Path, target: Path, *extra: str) -> int:
    code, _, err = run(
        capsys, "sign", str(source), str(target), "--serial", SERIAL, "--data-dir", str(data_dir), *extra
    )
    assert code == 0, err
    return code


def corpus(name: str) -> Path:
    return require_corpus() / name


def test_sign_then_verify_round_trip(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    stamped = tmp_path / "stamped.pdf"
    code, out, _ = run(
        capsys,
        "sign", str(corpus("sf-006-pdflatex-outline.pdf")), str(stamped), "--serial", SERIAL,
        "--page", "2", "--rect", "40,60,160,180", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert code == 0
    assert f"serial {SERIAL}, page 2, rect 40,60,160,180" in out
    assert stamped.read_bytes().startswith(corpus("sf-006-pdflatex-outline.pdf").read_bytes())

    code, out, _ = run(capsys, "verify", str(stamped), "--data-dir", str(data_dir))
    assert code == 0
    assert "1 signature(s)" in out and f"serial {SERIAL}" in out
    assert out.rstrip().endswith("VALID: every signature is valid and trusted")


def test_the_json_report(capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    stamped = tmp_path / "stamped.pdf"
    sign(capsys, data_dir, corpus("ph-signed-twice.pdf"), stamped)
    code, out, _ = run(capsys, "verify", str(stamped), "--json", "--data-dir", str(data_dir))
    report = json.loads(out)
    # The two earlier signatures are not under our root, so the file as a whole does not pass.
    assert code == 1 and report["valid"] is False
    assert set(report) == {"file", "document_sha256", "valid", "trust_roots", "signatures"}
    assert len(report["document_sha256"]) == 64 and report["trust_roots"] == 1
    first, second, ours = report["signatures"]
    assert all(set(signature) == REPORT_KEYS for signature in report["signatures"])
    assert (first["later_changes"], second["later_changes"], ours["later_changes"]) == ("allowed",) * 2 + (
        "none",
    )
    assert ours["valid"] and ours["serial"] == SERIAL and ours["revision"] == 3 and ours["problems"] == []
    assert ours["signed_at"].endswith("+00:00") and ours["kind"] == "approval"
    assert first["has_timestamp"] and not first["valid"] and first["problems"]


def test_a_tampered_file_fails(capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    stamped = tmp_path / "stamped.pdf"
    sign(capsys, data_dir, corpus("sf-002-libreoffice-writer.pdf"), stamped)
    tampered = bytearray(stamped.read_bytes())
    tampered[tampered.index(b"stream") + 20] ^= 0x01
    stamped.write_bytes(bytes(tampered))
    code, out, _ = run(capsys, "verify", str(stamped), "--data-dir", str(data_dir))
    assert code == 1
    assert "signature  INVALID" in out and out.rstrip().endswith("NOT VALID")


def test_another_root_is_not_trusted(
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    tmp_path: Path,
    ecdsa_pki: tuple[SigningIdentity, x509.Certificate],
) -> None:
    stamped = tmp_path / "stamped.pdf"
    sign(capsys, data_dir, corpus("sf-001-minimal-document.pdf"), stamped)
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(ecdsa_pki[1].public_bytes(serialization.Encoding.PEM))
    code, out, _ = run(
        capsys, "verify", str(stamped), "--trust", str(other_root), "--data-dir", str(data_dir)
    )
    assert code == 1 and "chain NOT TRUSTED" in out
    # With no trust root at all (no --trust, no development PKI) nothing is trusted either.
    code, out, _ = run(capsys, "verify", str(stamped), "--data-dir", str(tmp_path / "empty"))
    assert code == 1 and "no trust roots" in out


def test_signs_with_a_key_and_chain_from_files(
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    tmp_path: Path,
    ecdsa_pki: tuple[SigningIdentity, x509.Certificate],
) -> None:
    identity, root = ecdsa_pki
    key, cert, chain = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "chain.pem"
    key.write_bytes(
        identity.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    stamped = tmp_path / "stamped.pdf"
    source = corpus("sf-001-minimal-document.pdf")
    sign(capsys, data_dir, source, stamped, "--key", str(key), "--cert", str(cert), "--chain", str(chain))
    assert run(capsys, "verify", str(stamped), "--trust", str(chain))[0] == 0
    assert run(capsys, "verify", str(stamped), "--data-dir", str(data_dir))[0] == 1

    # A key that does not belong to the certificate is a usage error, not a bad signature.
    code, _, err = run(
        capsys, "sign", str(source), str(tmp_path / "x.pdf"), "--serial", SERIAL,
        "--key", str(data_dir / "pki" / "signer-key.pem"), "--cert", str(cert),
    )  # fmt: skip
    assert code == 2 and "does not belong" in err


def test_an_unsigned_pdf_does_not_pass(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, out, _ = run(
        capsys, "verify", str(corpus("sf-001-minimal-document.pdf")), "--data-dir", str(data_dir)
    )
    assert code == 1 and "no signature found" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "{garbage}"], "not a PDF"),
        (["verify", "{missing}"], "cannot read"),
        (["verify", "{encrypted}"], "password-protected"),
        (["verify", "{stamped}", "--trust", "{garbage}"], "no readable PEM certificate"),
        (["sign", "{source}", "{out}", "--serial", "SHORT"], "22 letters or digits"),
        (["sign", "{source}", "{out}", "--serial", SERIAL, "--page", "9"], "does not exist"),
        (["sign", "{source}", "{out}", "--serial", SERIAL, "--rect", "500,700,700,900"], "outside page 1"),
        (["sign", "{garbage}", "{out}", "--serial", SERIAL], "not a PDF"),
        (["sign", "{source}", "{out}", "--serial", SERIAL, "--key", "{garbage}"], "go together"),
        (
            ["sign", "{source}", "{out}", "--serial", SERIAL, "--tsa", "http://127.0.0.1:9/"],
            "timestamp authority cannot be reached",
        ),
        (["sign", "{source}", "/nonexistent/dir/out.pdf", "--serial", SERIAL], "cannot write"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"Surat perjanjian, but not a PDF")
    stamped = tmp_path / "stamped.pdf"
    sign(capsys, data_dir, corpus("sf-001-minimal-document.pdf"), stamped)
    paths = {
        "garbage": garbage,
        "missing": tmp_path / "missing.pdf",
        "encrypted": corpus("sf-005-encrypted-password.pdf"),
        "stamped": stamped,
        "source": corpus("sf-001-minimal-document.pdf"),
        "out": tmp_path / "out.pdf",
    }
    arguments = [argument.format(**paths) for argument in argv]
    code, _, err = run(capsys, *arguments, "--data-dir", str(data_dir))
    assert code == 2
    assert message in err and err.startswith(f"emeterai {argv[0]}: "), err
    assert not (tmp_path / "out.pdf").exists()


def test_the_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(bytes(range(256)) * 10)
    script = Path(sys.executable).with_name("emeterai")
    done = subprocess.run(
        [str(script), "verify", str(garbage)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("emeterai verify: ")


def test_sign_with_a_timestamp_authority_makes_pades_b_t(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    authority = TimestampAuthority(ensure_dev_pki(data_dir / "pki").load_tsa_identity())
    urls = serve_in_thread(build_app(authority))
    url = next(urls)
    try:
        out = tmp_path / "b-t.pdf"
        code, _, err = run(
            capsys,
            "sign",
            str(corpus("sf-001-minimal-document.pdf")),
            str(out),
            "--serial",
            SERIAL,
            "--tsa",
            url,
            "--data-dir",
            str(data_dir),
        )
        assert code == 0, err
    finally:
        urls.close()
    code, report, _ = run(capsys, "verify", str(out), "--json", "--data-dir", str(data_dir))
    assert code == 0
    [signature] = json.loads(report)["signatures"]
    assert signature["has_timestamp"] and signature["timestamp_valid"]
