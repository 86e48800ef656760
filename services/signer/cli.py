"""`emeterai sign` and `emeterai verify`: stamp and check PDFs on a laptop, with no service running.

Exit codes: 0 success (for verify: at least one signature, and every one valid and trusted);
1 a verification that did not pass; 2 unusable input or options, with a message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.common.errors import DomainError
from services.common.files import write_atomically
from services.signer.changes import ALLOWED, MODIFIED, NONE
from services.signer.pki import PkiError, SigningIdentity, ensure_dev_pki, load_trust_roots
from services.signer.placement import Placement
from services.signer.stamping import place_stamp
from services.signer.tsa_client import HttpTimestampClient
from services.signer.verification import SignatureReport, VerificationResult, verify_document

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
USAGE_ERROR = 2


class CliError(Exception):
    """Bad options or unusable input; the message goes to stderr and the exit code is 2."""


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `sign` and `verify` on the `emeterai` parser."""
    sign = commands.add_parser("sign", help="stamp a PDF with an e-meterai (no services needed)")
    sign.add_argument("input", type=Path, metavar="IN", help="the PDF to stamp")
    sign.add_argument("output", type=Path, metavar="OUT", help="where to write the stamped PDF")
    sign.add_argument("--serial", required=True, help="the 22-character e-meterai serial")
    sign.add_argument("--page", type=int, default=0, help="1-based page (default: the last page)")
    sign.add_argument(
        "--rect",
        type=_rect,
        help="llx,lly,urx,ury in points, as a viewer shows the page (default: bottom right)",
    )
    sign.add_argument("--key", type=Path, help="PEM private key (default: the development PKI)")
    sign.add_argument("--cert", type=Path, help="PEM certificate of the key")
    sign.add_argument("--chain", type=Path, action="append", default=[], help="PEM issuer certificates")
    sign.add_argument("--tsa", metavar="URL", help="RFC 3161 timestamp authority (PAdES B-T)")
    sign.add_argument(
        "--public-url", default=DEFAULT_PUBLIC_URL, help="base of the QR code's verification link"
    )
    sign.add_argument(
        "--data-dir", type=Path, default=Path(".emeterai"), help="where the development PKI lives"
    )
    sign.set_defaults(run=run_sign)

    verify = commands.add_parser("verify", help="check every signature in a PDF")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        help="PEM trust roots (default: the development root)",
    )
    verify.add_argument("--json", action="store_true", help="print a JSON report")
    verify.add_argument(
        "--data-dir", type=Path, default=Path(".emeterai"), help="where the development PKI lives"
    )
    verify.set_defaults(run=run_verify)


def run_sign(args: argparse.Namespace) -> int:
    return _guarded(_sign, args)


def run_verify(args: argparse.Namespace) -> int:
    return _guarded(_verify, args)


def _guarded(command: object, args: argparse.Namespace) -> int:
    try:
        return command(args)  # type: ignore[operator]
    except (CliError, PkiError) as exc:
        print(f"emeterai {args.command}: {exc}", file=sys.stderr)
    except DomainError as exc:
        print(f"emeterai {args.command}: {exc.message}", file=sys.stderr)
    return USAGE_ERROR


def _sign(args: argparse.Namespace) -> int:
    identity = _identity(args)
    document = _read(args.input)
    with contextlib.ExitStack() as stack:
        timestamp = None
        if args.tsa:
            timestamp = stack.enter_context(HttpTimestampClient(args.tsa)).timestamp
        result = place_stamp(
            document,
            serial=args.serial,
            placement=Placement(page=args.page, rect=args.rect),
            identity=identity,
            public_url=args.public_url,
            document_name=args.input.stem,
            timestamp=timestamp,
        )
    try:
        write_atomically(args.output, result.stamped_document)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    rect = ",".join(f"{value:g}" for value in result.rect)
    print(f"stamped {args.output}: serial {args.serial}, page {result.page}, rect {rect}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    roots = _trust_roots(args)
    result = verify_document(_read(args.file), roots)
    passed = bool(result.signatures) and all(_passes(report) for report in result.signatures)
    if args.json:
        print(json.dumps(report_json(args.file, result, passed, trusted_roots=len(roots)), indent=2))
    else:
        print(_summary(args.file, result, passed, trusted_roots=len(roots)))
    return 0 if passed else 1


def _passes(report: SignatureReport) -> bool:
    timestamp_ok = report.timestamp_valid or not report.has_timestamp
    return report.signature_valid and report.document_intact and report.chain_trusted and timestamp_ok


def report_json(
    path: Path, result: VerificationResult, passed: bool, *, trusted_roots: int
) -> dict[str, object]:
    """The JSON report: one object per signature, field names as in SignatureReport."""
    return {
        "file": str(path),
        "document_sha256": result.document_sha256.hex(),
        "valid": passed,
        "trust_roots": trusted_roots,
        "signatures": [
            {
                key: value.isoformat() if isinstance(value, dt.datetime) else value
                for key, value in dataclasses.asdict(report).items()
            }
            | {"problems": list(report.problems), "valid": _passes(report)}
            for report in result.signatures
        ],
    }


def _summary(path: Path, result: VerificationResult, passed: bool, *, trusted_roots: int) -> str:
    lines = [f"{path}: {len(result.signatures)} signature(s), SHA-256 {result.document_sha256.hex()}"]
    if not trusted_roots:
        lines.append(
            "  no trust roots: pass --trust, or run `emeterai up` once to create the development PKI"
        )
    later = {NONE: "no later changes", ALLOWED: "only allowed later changes", MODIFIED: "MODIFIED afterwards"}
    for number, report in enumerate(result.signatures, start=1):
        serial = f" serial {report.serial}" if report.serial else ""
        lines.append(f"  {number}. {report.field_name or '(unnamed)'} ({report.kind}){serial}")
        lines.append(f"     signer     {report.signer_subject or 'unknown'}")
        signed_at = f"{report.signed_at:%Y-%m-%d %H:%M:%S} UTC" if report.signed_at else "unknown"
        lines.append(f"     signed at  {signed_at}{' (timestamp)' if report.timestamp_valid else ''}")
        coverage = "the whole file" if report.covers_whole_document else "an earlier revision"
        lines.append(f"     covers     revision {report.revision}, {coverage}; {later[report.later_changes]}")
        lines.append(
            f"     signature  {'valid' if report.signature_valid else 'INVALID'}, "
            f"document {'intact' if report.document_intact else 'NOT INTACT'}, "
            f"chain {'trusted' if report.chain_trusted else 'NOT TRUSTED'}"
        )
        if report.has_timestamp:
            when = (
                f"{report.timestamp_time:%Y-%m-%d %H:%M:%S} UTC" if report.timestamp_time else "unknown time"
            )
            state = "valid" if report.timestamp_valid else "NOT VALID"
            lines.append(
                f"     timestamp  {state}, {when}, {report.timestamp_authority or 'unknown authority'}"
            )
        lines += [f"     problem    {problem}" for problem in report.problems]
    if not result.signatures:
        lines.append("  no signature found")
    lines.append("VALID: every signature is valid and trusted" if passed else "NOT VALID")
    return "\n".join(lines)


def _identity(args: argparse.Namespace) -> SigningIdentity:
    if args.key is None and args.cert is None:
        if args.chain:
            raise CliError("--chain needs --key and --cert")
        return ensure_dev_pki(args.data_dir / "pki").load_identity()
    if args.key is None or args.cert is None:
        raise CliError("--key and --cert go together")
    try:
        key = serialization.load_pem_private_key(_read(args.key), password=None)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{args.key} is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CliError(f"{args.key}: only RSA and ECDSA keys can sign")
    chain = [*_certificates(args.cert), *(cert for path in args.chain for cert in _certificates(path))]
    return SigningIdentity(key, tuple(chain))


def _trust_roots(args: argparse.Namespace) -> list[x509.Certificate]:
    if args.trust:
        return [cert for path in args.trust for cert in _certificates(path)]
    development_root = args.data_dir / "pki" / "root.pem"
    return load_trust_roots(development_root) if development_root.exists() else []


def _certificates(path: Path) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(_read(path))
    except ValueError as exc:
        raise CliError(f"{path} holds no readable PEM certificate") from exc
    return certificates


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _rect(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError("expected four numbers: llx,lly,urx,ury")
    return values  # type: ignore[return-value]
