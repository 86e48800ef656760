"""The Ed25519 keys that sign tokens: loaded from a folder of PEM files, published as a JWKS.

The folder may hold several keys, every one of them published, so a token verifies whichever key
signed it. Files are named `ed25519-<UTC time>-<kid prefix>.pem`, the time being when the key
starts to sign; of the keys whose time has come, the newest signs.

Rotation without downtime (`emeterai keys add --signs-in 10m`, then `emeterai keys retire --kid=KID`):
1. a new key is added with a start time ahead. Every auth replica rereads the folder every
   RELOAD_S, and publishes the key at once; verifiers that see it named by a token fetch the JWKS
   again, so the key is known everywhere before anything is signed with it;
2. at its time the new key signs; tokens from the old one keep verifying until they expire;
3. once the access-token lifetime has passed, the old key is retired (its file removed).
Any file named otherwise counts as having started at once, ordered by name.
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


# Seconds between rereads of the key folder by a running auth service.
RELOAD_S = 30
_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    # When it starts to sign; None for a key whose file name carries no time (signs at once).
    signs_from: datetime | None = None
    file_name: str = ""

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
    """Signing keys: all of them verify; the newest whose time has come signs."""

    def __init__(self, keys: list[SigningKey], directory: Path | None = None) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._directory = directory
        self._set(keys)

    def _set(self, keys: list[SigningKey]) -> None:
        # Replaced whole, never changed in place: requests read them while a reload runs.
        self._keys = list(keys)
        self._by_kid = {key.kid: key for key in keys}

    @classmethod
    def load(cls, directory: Path, *, create_if_empty: bool = True) -> Keyring:
        """Read every `*.pem` in `directory`; create a first key there if it holds none."""
        directory = Path(directory)
        if not _key_files(directory):
            if not create_if_empty:
                raise KeyringError(f"no signing keys (*.pem) in {directory}")
            created = generate_key_file(directory)
            log.info("created token signing key", extra={"key_file": created.name})
        # Read after creating: a replica starting at the same moment may have created one too, and
        # all replicas must agree on which key signs.
        return cls(_read_keys(directory), directory)

    def reload(self) -> bool:
        """Read the folder again (keys added or retired); whether anything changed. A folder left
        without a readable key keeps the keys already loaded, and says so in the log."""
        if self._directory is None:
            return False
        try:
            keys = _read_keys(self._directory)
        except (KeyringError, OSError) as exc:
            log.error("token signing keys not reloaded; keeping the loaded ones", extra={"error": str(exc)})
            return False
        if not keys:
            log.error("the key folder holds no keys; keeping the loaded ones")
            return False
        if [k.kid for k in keys] == [k.kid for k in self._keys]:
            return False
        self._set(keys)
        log.info("token signing keys reloaded", extra={"kids": [k.kid for k in keys]})
        return True

    def current_at(self, now: datetime) -> SigningKey:
        """The key that signs at `now`: the newest of those whose start time has come."""
        started = [k for k in self._keys if k.signs_from is None or k.signs_from <= now]
        return started[-1] if started else self._keys[0]

    @property
    def current(self) -> SigningKey:
        return self.current_at(datetime.now(UTC))

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._by_kid.get(kid)
        return key.public_key if key else None

    def jwks(self) -> list[dict[str, str]]:
        return [key.jwk() for key in self._keys]


def _key_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pem")) if directory.is_dir() else []


def _signs_from(path: Path) -> datetime | None:
    parts = path.stem.split("-")
    if len(parts) >= 3 and parts[0] == "ed25519":
        try:
            return datetime.strptime(parts[1], _STAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


def _read_keys(directory: Path) -> list[SigningKey]:
    """The folder's keys, oldest start first (a file without a time counts as started long ago)."""
    keys: dict[str, SigningKey] = {}
    for path in _key_files(directory):
        public = SigningKey.from_private_key(_read_private_key(path))
        keys.setdefault(public.kid, SigningKey(public.kid, public.private_key, _signs_from(path), path.name))
    earliest = datetime.min.replace(tzinfo=UTC)
    return sorted(keys.values(), key=lambda k: (k.signs_from or earliest, k.file_name))


# Key files already warned about, with the mode they had: the folder is reread every 30 s, and a
# Kubernetes Secret volume can only make a file group-readable for a non-root user (0440), so the
# warning is said once per file and mode rather than on every reread.
_warned_modes: set[tuple[str, int]] = set()


def _read_private_key(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 and (str(path), mode) not in _warned_modes:
        _warned_modes.add((str(path), mode))
        log.warning(
            "signing key file is readable by other users", extra={"key_file": str(path), "mode": oct(mode)}
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"{path}: not an Ed25519 key; tokens are signed with EdDSA (Ed25519)")
    return key


def generate_key_file(directory: Path, signs_from: datetime | None = None) -> Path:
    """Create a new Ed25519 key in `directory` that starts to sign at signs_from (now if None)."""
    private_key = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(private_key.public_key())
    stamp = (signs_from or datetime.now(UTC)).astimezone(UTC).strftime(_STAMP_FORMAT)
    path = Path(directory) / f"ed25519-{stamp}-{kid[:8]}.pem"
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(path, pem)
    return path


def retire_key(directory: Path, kid: str, now: datetime | None = None) -> Path:
    """Remove the key kid from the folder; refused for the key that signs now (KeyringError)."""
    keys = _read_keys(Path(directory))
    match = [k for k in keys if k.kid == kid]
    if not match:
        raise KeyringError(f"no key {kid!r} in {directory}")
    if kid == Keyring(keys).current_at(now or datetime.now(UTC)).kid:
        raise KeyringError(f"key {kid} signs now; add its successor and wait before retiring it")
    path = Path(directory) / match[0].file_name
    path.unlink()
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
