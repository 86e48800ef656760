"""Issuing tokens: signed access tokens, rotating refresh tokens, and service identities.

Access tokens are EdDSA JWTs that any service verifies offline against the JWKS (see
services/common/tokens.py for the verifying side; the claims here are its contract). Refresh
tokens are opaque random strings kept only as hashes; each one is single use and belongs to a
family (one sign-in), so a replayed token signs out everything descended from that sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import redis
from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.auth.errors import InvalidRefreshToken, InvalidServiceCredentials, RefreshTokenReused
from services.auth.keys import Keyring
from services.auth.model import AccessToken, Clock, TokenKind, TokenPair, utc_now
from services.auth.store import refresh_tokens, revoked_access_tokens, token_families
from services.common.errors import InvalidInput
from services.common.revocations import revoke_token
from services.common.settings import AuthSettings

log = logging.getLogger(__name__)

_SERVICE_NAME = re.compile(r"[a-z]+(?:-[a-z]+)*")


class TokenIssuer:
    """Signs access tokens with the keyring's current key."""

    def __init__(self, keyring: Keyring, settings: AuthSettings, clock: Clock = utc_now) -> None:
        self._keyring = keyring
        self._settings = settings
        self._clock = clock

    def issue(self, subject: str, kind: TokenKind, scopes: Iterable[str] = ()) -> AccessToken:
        now = self._clock()
        ttl = self._settings.access_token_ttl_s
        expires_at = now + timedelta(seconds=ttl)
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self._settings.token_issuer,
            "aud": self._settings.token_audience,
            "sub": subject,
            "kind": kind.value,
            "scope": " ".join(sorted(set(scopes))),
            "jti": jti,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        key = self._keyring.current_at(now)
        token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
        return AccessToken(token=token, jti=jti, expires_at=expires_at, expires_in_s=ttl)

    def decode(self, token: str) -> dict[str, Any] | None:
        """Claims of a token this issuer signed and that is still valid; None for anything else."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            public_key = self._keyring.public_key(kid) if isinstance(kid, str) else None
            if public_key is None:
                return None
            return jwt.decode(
                token,
                public_key,
                algorithms=["EdDSA"],
                audience=self._settings.token_audience,
                issuer=self._settings.token_issuer,
                options={"require": ["exp", "iat", "jti", "sub"]},
            )
        except jwt.PyJWTError:
            return None


def _hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    """Refresh-token families: open on sign-in, rotate on refresh, revoke on sign-out or reuse."""

    def __init__(
        self,
        engine: Engine,
        issuer: TokenIssuer,
        settings: AuthSettings,
        clock: Clock = utc_now,
        revocations: redis.Redis | None = None,
    ) -> None:
        """revocations: the Redis holding the list of signed-out tokens every service checks,
        besides this service's own record."""
        self._engine = engine
        self._issuer = issuer
        self._settings = settings
        self._clock = clock
        self._revocations = revocations

    def open(
        self, conn: Connection, account_id: str, kind: TokenKind, scopes: Iterable[str] = ()
    ) -> TokenPair:
        """Start a family inside the caller's transaction, so sign-in and session commit together."""
        scope = " ".join(sorted(set(scopes)))
        family_id = "fam_" + secrets.token_hex(12)
        conn.execute(
            insert(token_families).values(
                family_id=family_id,
                account_id=account_id,
                token_kind=kind.value,
                scope=scope,
                created_at=self._clock(),
            )
        )
        return self._issue_pair(conn, family_id, account_id, kind, scope)

    def start(self, account_id: str, kind: TokenKind, scopes: Iterable[str] = ()) -> TokenPair:
        with self._engine.begin() as conn:
            return self.open(conn, account_id, kind, scopes)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Retire `refresh_token` and return a new pair; a spent token revokes its whole family."""
        if not refresh_token:
            raise InvalidRefreshToken()
        now = self._clock()
        token_hash = _hash_refresh_token(refresh_token)
        pair: TokenPair | None = None
        with self._engine.begin() as conn:
            row = conn.execute(
                select(
                    refresh_tokens.c.family_id,
                    refresh_tokens.c.expires_at,
                    refresh_tokens.c.used_at,
                    token_families.c.account_id,
                    token_families.c.token_kind,
                    token_families.c.scope,
                    token_families.c.revoked_at,
                )
                .join(token_families, token_families.c.family_id == refresh_tokens.c.family_id)
                .where(refresh_tokens.c.token_hash == token_hash)
            ).one_or_none()
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                raise InvalidRefreshToken()
            # Conditional on used_at so two concurrent refreshes with one token cannot both win.
            spent = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
            if spent.rowcount == 1:
                pair = self._issue_pair(
                    conn, row.family_id, row.account_id, TokenKind(row.token_kind), row.scope
                )
            else:
                self._revoke_family(conn, row.family_id, now)
        if pair is None:
            # Either the user or a thief replayed it; we cannot tell which, so both lose the session.
            log.warning("refresh token reused; family revoked", extra={"family_id": row.family_id})
            raise RefreshTokenReused()
        return pair

    def revoke(self, refresh_token: str, access_token: str = "") -> None:
        """Sign out: revoke the refresh token's family and deny-list the access token.

        Unknown or already revoked tokens are not an error: signing out twice is still signed out.
        """
        if not refresh_token and not access_token:
            raise InvalidInput("give the refresh token, the access token, or both")
        now = self._clock()
        with self._engine.begin() as conn:
            if refresh_token:
                family_id = conn.execute(
                    select(refresh_tokens.c.family_id).where(
                        refresh_tokens.c.token_hash == _hash_refresh_token(refresh_token)
                    )
                ).scalar_one_or_none()
                if family_id is not None:
                    self._revoke_family(conn, family_id, now)
            claims = self._issuer.decode(access_token) if access_token else None
            if claims is not None:
                self._deny_access_token(conn, claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
        if claims is not None and self._revocations is not None:
            try:
                revoke_token(self._revocations, claims["jti"], int(claims["exp"]))
            except redis.RedisError as exc:
                # Signed out all the same: the family is revoked, and the access token expires soon.
                log.warning(
                    "sign-out not shared with other services", extra={"error_type": type(exc).__name__}
                )

    def revoke_account(self, conn: Connection, account_id: str) -> None:
        """Revoke every session of the account, in the caller's transaction."""
        self._revoke_families(conn, token_families.c.account_id == account_id, self._clock())

    def is_access_token_revoked(self, jti: str) -> bool:
        with self._engine.connect() as conn:
            found = conn.execute(
                select(revoked_access_tokens.c.jti).where(revoked_access_tokens.c.jti == jti)
            ).first()
        return found is not None

    def _deny_access_token(self, conn: Connection, jti: str, expires_at: datetime) -> None:
        try:
            with conn.begin_nested():
                conn.execute(insert(revoked_access_tokens).values(jti=jti, expires_at=expires_at))
        except IntegrityError:
            pass  # already revoked

    def _revoke_family(self, conn: Connection, family_id: str, now: datetime) -> None:
        self._revoke_families(conn, token_families.c.family_id == family_id, now)

    def _revoke_families(self, conn: Connection, which: ColumnElement[bool], now: datetime) -> None:
        conn.execute(
            update(token_families).where(which, token_families.c.revoked_at.is_(None)).values(revoked_at=now)
        )

    def _issue_pair(
        self, conn: Connection, family_id: str, account_id: str, kind: TokenKind, scope: str
    ) -> TokenPair:
        now = self._clock()
        refresh_token = "rt_" + secrets.token_urlsafe(32)
        conn.execute(
            insert(refresh_tokens).values(
                token_hash=_hash_refresh_token(refresh_token),
                family_id=family_id,
                issued_at=now,
                expires_at=now + timedelta(seconds=self._settings.refresh_token_ttl_s),
            )
        )
        access = self._issuer.issue(account_id, kind, scope.split())
        return TokenPair(
            access_token=access.token, refresh_token=refresh_token, expires_in_s=access.expires_in_s
        )


class ServiceIdentity:
    """Tokens for internal services that prove they hold the shared service secret."""

    def __init__(self, issuer: TokenIssuer, settings: AuthSettings) -> None:
        self._issuer = issuer
        self._secret = settings.service_secret.get_secret_value().encode("utf-8")

    def issue_service_token(self, service_name: str, secret: str) -> AccessToken:
        if len(service_name) > 40 or not _SERVICE_NAME.fullmatch(service_name):
            raise InvalidInput("a service name is lowercase letters and dashes, e.g. 'gateway'")
        if not hmac.compare_digest(secret.encode("utf-8"), self._secret):
            log.warning("service token refused: wrong secret", extra={"service_name": service_name})
            raise InvalidServiceCredentials()
        return self._issuer.issue(f"service:{service_name}", TokenKind.SERVICE)
