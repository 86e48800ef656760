"""The Ed25519 keys that sign tokens: loaded from a folder of PEM files, published as a JWKS.

The folder may hold several keys. The one whose file name sorts last signs; every key is
published, so tokens signed before a rotation keep verifying until they expire. Files created here
are named `ed25519-<UTC time>-<kid prefix>.pem`, which sorts by age; a rotation adds a newer file
and removes an old one only after the access-token lifetime has passed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.files import write_private_file

log = logging.getLogger(__name__)


class KeyringError(Exception):
    """The key folder cannot be used; raised at start, never during a request."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, no spaces."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = _b64url(raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        return cls(kid=jwk_thumbprint(private_key.public_key()), private_key=private_key)


class Keyring:
    """Signing keys in rotation order: the last one signs, all of them verify."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._keys = list(keys)
        self._by_kid = {key.kid: key for key in keys}

    @classmethod
    def load(cls, directory: Path, *, create_if_empty: bool = True) -> Keyring:
        """Read every `*.pem` in `directory`; create a first key there if it holds none."""
        directory = Path(directory)
        paths = sorted(directory.glob("*.pem")) if directory.is_dir() else []
        if not paths:
            if not create_if_empty:
                raise KeyringError(f"no signing keys (*.pem) in {directory}")
            created = generate_key_file(directory)
            log.info("created token signing key", extra={"key_file": created.name})
            # Rescan: a replica starting at the same moment may have created one too, and all
            # replicas must agree on which key signs.
            paths = sorted(directory.glob("*.pem"))
        keys: list[SigningKey] = []
        for path in paths:
            key = SigningKey.from_private_key(_read_private_key(path))
            if key.kid not in {k.kid for k in keys}:
                keys.append(key)
        return cls(keys)

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._by_kid.get(kid)
        return key.public_key if key else None

    def jwks(self) -> list[dict[str, str]]:
        return [key.jwk() for key in self._keys]


def _read_private_key(path: Path) -> Ed25519PrivateKey:
    if path.stat().st_mode & 0o077:
        log.warning("signing key file is readable by other users", extra={"key_file": str(path)})
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path}: not an Ed25519 key; tokens are signed with EdDSA (Ed25519)")
    return key


def generate_key_file(directory: Path) -> Path:
    """Create a new Ed25519 key in `directory`, named so it sorts after every existing one."""
    private_key = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(private_key.public_key())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = Path(directory) / f"ed25519-{stamp}-{kid[:8]}.pem"
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(path, pem)
    return path


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """Random bytes kept in `path` (created 0600 on first use), e.g. the key codes are hashed with."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = secrets.token_bytes(size)
        write_private_file(path, data)
        # Another process may have won the race to create it; everyone must use the same bytes.
        data = path.read_bytes()
    if len(data) < 16:
        raise KeyringError(f"{path}: secret is too short ({len(data)} bytes, want at least 16)")
    return data
