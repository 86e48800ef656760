from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.keys import Keyring, KeyringError, generate_key_file, jwk_thumbprint, load_or_create_secret


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_thumbprint_matches_rfc_8037_example() -> None:
    # RFC 8037 appendix A.1 (key) and A.3 (its RFC 7638 thumbprint).
    private_key = Ed25519PrivateKey.from_private_bytes(
        _b64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
    )
    assert jwk_thumbprint(private_key.public_key()) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_empty_folder_gets_one_private_key(tmp_path: Path) -> None:
    key_dir = tmp_path / "jwt"
    keyring = Keyring.load(key_dir)
    files = list(key_dir.glob("*.pem"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert not list(key_dir.glob(".*.tmp"))
    # A restart reads the same key back instead of making another.
    assert Keyring.load(key_dir).current.kid == keyring.current.kid
    assert len(list(key_dir.glob("*.pem"))) == 1


def test_jwks_publishes_every_key_and_the_newest_signs(tmp_path: Path) -> None:
    first = Keyring.load(tmp_path).current.kid
    generate_key_file(tmp_path)
    keyring = Keyring.load(tmp_path)
    jwks = keyring.jwks()
    assert len(jwks) == 2
    assert jwks[0]["kid"] == first
    assert keyring.current.kid == jwks[-1]["kid"] != first
    for jwk in jwks:
        assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
        }
        assert len(_b64url_decode(jwk["x"])) == 32
        assert keyring.public_key(jwk["kid"]) is not None


def test_refuses_a_folder_without_keys_when_asked_not_to_create(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="no signing keys"):
        Keyring.load(tmp_path, create_if_empty=False)


def test_refuses_a_key_that_is_not_ed25519(tmp_path: Path) -> None:
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    with pytest.raises(KeyringError, match="not an Ed25519 key"):
        Keyring.load(tmp_path)


def test_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "otp-code.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == secret
