"""A real SoftHSM2 token for the PKCS#11 tests: made once per session, certified by the test PKI."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.signer.keys import KeySpec
from services.signer.pki import DevPki

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "emeterai-test"
PIN = "246810"
SO_PIN = "13579111"


def issue_certificate(
    dev_pki: DevPki, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, name: str
) -> list[x509.Certificate]:
    """A signer certificate for `public_key` from the test PKI's issuing CA; the chain, leaf first."""
    issuing_key = serialization.load_pem_private_key(dev_pki.issuing_ca_key_path.read_bytes(), password=None)
    assert isinstance(issuing_key, ec.EllipticCurvePrivateKey)
    _, issuing, root = dev_pki.load_identity().chain
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(issuing.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(issuing_key, hashes.SHA256())
    )
    return [leaf, issuing, root]


@dataclass(frozen=True)
class Token:
    module: Path
    label: str
    pin: str
    rsa_chain: list[x509.Certificate]
    ec_chain: list[x509.Certificate]
    directory: Path

    def spec(self, key_label: str, chain_path: Path, **changes: object) -> KeySpec:
        values: dict[str, object] = {
            "pkcs11_module": self.module,
            "pkcs11_token": self.label,
            "pkcs11_key_label": key_label,
            "pkcs11_pin": self.pin,
            "chain_path": chain_path,
        }
        return KeySpec("pkcs11", **(values | changes))  # type: ignore[arg-type]


def require_softhsm() -> str:
    """softhsm2-util's path; skips with the reason, or fails on CI, where the tests must run."""
    util = shutil.which("softhsm2-util")
    if util is not None and SOFTHSM_MODULE.exists():
        return util
    message = f"SoftHSM2 is missing ({SOFTHSM_MODULE}, softhsm2-util): apt-get install softhsm2"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (required on CI)")
    pytest.skip(message + "; the PKCS#11 tests did not run")


def make_softhsm_token(tmp_path_factory: pytest.TempPathFactory, dev_pki: DevPki) -> Iterator[Token]:
    """A fresh SoftHSM2 token holding an RSA-3072 and a P-256 key, certified by the test PKI.

    SoftHSM reads SOFTHSM2_CONF when the module is first initialised in this process and only then
    looks for tokens, so every token is made here, before any test opens the module.
    """
    util = require_softhsm()
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = os.environ | {"SOFTHSM2_CONF": str(conf)}

    def run(*args: str) -> None:
        subprocess.run([util, *args], env=env, check=True, capture_output=True, timeout=60)

    run("--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for key, label, key_id in ((rsa_key, "signer-rsa", "01"), (ec_key, "signer-p256", "02")):
        pem = directory / f"{label}.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        run("--import", str(pem), "--token", TOKEN, "--label", label, "--id", key_id, "--pin", PIN)
        pem.unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        yield Token(
            module=SOFTHSM_MODULE,
            label=TOKEN,
            pin=PIN,
            rsa_chain=issue_certificate(dev_pki, rsa_key.public_key(), "HSM RSA Signer"),
            ec_chain=issue_certificate(dev_pki, ec_key.public_key(), "HSM P-256 Signer"),
            directory=directory,
        )


