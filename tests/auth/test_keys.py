from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auth.keys import (
    Keyring,
    KeyringError,
    generate_key_file,
    jwk_thumbprint,
    load_or_create_secret,
    retire_key,
)
from services.auth.model import TokenKind
from services.auth.tokens import TokenIssuer
from services.cli import build_parser
from services.common.settings import AuthSettings
from services.common.tokens import TokenVerifier


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


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


def test_a_key_added_ahead_is_published_at_once_and_signs_at_its_time(tmp_path: Path) -> None:
    keyring = Keyring.load(tmp_path)
    old = keyring.current.kid
    now = datetime.now(UTC)
    generate_key_file(tmp_path, now + timedelta(minutes=10))
    assert keyring.reload()
    new = keyring.jwks()[-1]["kid"]
    assert new != old and keyring.public_key(new) is not None
    assert keyring.current_at(now).kid == old
    assert keyring.current_at(now + timedelta(minutes=10, seconds=1)).kid == new
    # Nothing changed on disk: nothing to reload.
    assert not keyring.reload()


def test_retiring_removes_an_old_key_but_never_the_signing_one(tmp_path: Path) -> None:
    keyring = Keyring.load(tmp_path)
    old = keyring.current.kid
    generate_key_file(tmp_path)
    keyring.reload()
    new = keyring.current.kid
    assert new != old
    with pytest.raises(KeyringError, match="signs now"):
        retire_key(tmp_path, new)
    with pytest.raises(KeyringError, match="no key"):
        retire_key(tmp_path, "unknown")
    retire_key(tmp_path, old)
    assert keyring.reload() and [k["kid"] for k in keyring.jwks()] == [new]


def test_a_folder_emptied_by_mistake_keeps_the_loaded_keys(tmp_path: Path) -> None:
    keyring = Keyring.load(tmp_path)
    kid = keyring.current.kid
    for path in tmp_path.glob("*.pem"):
        path.unlink()
    assert not keyring.reload()
    assert keyring.current.kid == kid


def test_a_key_others_may_read_is_warned_about_once_not_on_every_reread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyring = Keyring.load(tmp_path)
    (key_file,) = tmp_path.glob("*.pem")
    # As a Kubernetes Secret volume mounts it for a non-root user.
    key_file.chmod(0o440)
    with caplog.at_level("WARNING", logger="services.auth.keys"):
        for _ in range(3):
            keyring.reload()
    warned = [r for r in caplog.records if "readable by other users" in r.getMessage()]
    assert len(warned) == 1 and warned[0].key_file == str(key_file)
    # A mode that changes again is news.
    key_file.chmod(0o444)
    caplog.clear()
    with caplog.at_level("WARNING", logger="services.auth.keys"):
        keyring.reload()
    assert [r.mode for r in caplog.records if "readable by other users" in r.getMessage()] == ["0o444"]


async def test_verifiers_follow_a_rotation_without_a_restart(tmp_path: Path, settings: AuthSettings) -> None:
    keyring = Keyring.load(tmp_path)
    issuer = TokenIssuer(keyring, settings)
    # A verifier that fetched the JWKS before the rotation: it learns the new key from a refetch.
    fetched: list[int] = []

    class Published:
        async def public_key(self, kid: str) -> Any:
            fetched.append(1)
            return keyring.public_key(kid)

    verifier = TokenVerifier(Published(), settings.token_issuer, settings.token_audience)
    before = issuer.issue("acc_1", TokenKind.RETAIL).token
    generate_key_file(tmp_path)
    keyring.reload()
    after = issuer.issue("acc_1", TokenKind.RETAIL).token
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    for token in (before, after):
        assert (await verifier.verify(token)).subject == "acc_1"


def test_the_keys_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Keyring.load(tmp_path)
    assert cli_main(["keys", "add", "--signs-in", "10m", "--key-dir", str(tmp_path)]) == 0
    added = json.loads(capsys.readouterr().out)
    assert datetime.fromisoformat(added["signs_from"]) > datetime.now(UTC) + timedelta(minutes=9)
    assert cli_main(["keys", "list", "--key-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["signing"] for k in listed] == [True, False]
    assert cli_main(["keys", "retire", f"--kid={listed[0]['kid']}", "--key-dir", str(tmp_path)]) == 1
    assert "signs now" in capsys.readouterr().err
    assert cli_main(["keys", "retire", f"--kid={listed[1]['kid']}", "--key-dir", str(tmp_path)]) == 0
    assert cli_main(["keys", "add", "--signs-in", "soon", "--key-dir", str(tmp_path)]) == 2
