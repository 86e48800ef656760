"""Distributor systems and their client credentials (OAuth-style client id and secret).

The secret is shown once, when created or rotated, and stored only as an argon2 hash. Wrong,
unknown and revoked clients all get the same error after the same work, so the answer tells a
prober nothing about which client ids exist.

Each credential also has a webhook secret, which signs the gateway's callbacks to the distributor.
It is made with the credential and kept when the client secret rotates (a rotation by an operator
must not silently break the distributor's signature checks); the distributor replaces it itself.
Signing needs the key, so it is stored as it is.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, insert, select, update
from sqlalchemy.engine import Connection, Engine

from services.auth.accounts import Accounts
from services.auth.errors import (
    DistributorNotFound,
    DistributorRevoked,
    InvalidClientCredentials,
    NoWebhookSecret,
)
from services.auth.model import AccessToken, Clock, DistributorCredential, TokenKind, utc_now
from services.auth.store import accounts, distributor_credentials, distributor_webhook_secrets
from services.auth.tokens import TokenIssuer
from services.common.errors import InvalidInput

log = logging.getLogger(__name__)

_SCOPE = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_MAX_SCOPES = 32


def _clean_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    cleaned = sorted({scope.strip() for scope in scopes if scope.strip()})
    bad = [scope for scope in cleaned if not _SCOPE.fullmatch(scope)]
    if bad:
        raise InvalidInput(f"scopes are lowercase words like 'stamps:read'; not valid: {', '.join(bad)}")
    if len(cleaned) > _MAX_SCOPES:
        raise InvalidInput(f"at most {_MAX_SCOPES} scopes")
    return tuple(cleaned)


def _new_secret() -> str:
    # The prefix lets secret scanners recognise a leaked one.
    return "emsec_" + secrets.token_urlsafe(32)


def _new_webhook_secret() -> str:
    return "emwhsec_" + secrets.token_urlsafe(32)


class Distributors:
    def __init__(
        self,
        engine: Engine,
        accounts: Accounts,
        issuer: TokenIssuer,
        clock: Clock = utc_now,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._engine = engine
        self._accounts = accounts
        self._issuer = issuer
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        # Compared against when the client id is unknown, so that answer costs the same hash.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def create_distributor(
        self, display_name: str, scopes: Iterable[str]
    ) -> tuple[DistributorCredential, str]:
        """A distributor account with its credential; returns the credential and its one-time secret."""
        scope = " ".join(_clean_scopes(scopes))
        secret = _new_secret()
        secret_hash = self._hasher.hash(secret)
        with self._engine.begin() as conn:
            account = self._accounts.create_distributor_account(conn, display_name)
            client_id = "cli_" + secrets.token_hex(10)
            conn.execute(
                insert(distributor_credentials).values(
                    client_id=client_id,
                    account_id=account.account_id,
                    scope=scope,
                    secret_hash=secret_hash,
                    created_at=self._clock(),
                )
            )
            conn.execute(
                insert(distributor_webhook_secrets).values(
                    client_id=client_id, secret=_new_webhook_secret(), created_at=self._clock()
                )
            )
            credential = self._find(conn, client_id)
        log.info("distributor created", extra={"client_id": client_id, "account_id": account.account_id})
        return credential, secret

    def rotate_secret(self, client_id: str) -> tuple[DistributorCredential, str]:
        """Replace the secret; the old one stops working at once."""
        secret = _new_secret()
        secret_hash = self._hasher.hash(secret)
        with self._engine.begin() as conn:
            credential = self._find(conn, client_id)
            if credential.revoked_at is not None:
                raise DistributorRevoked(client_id)
            conn.execute(
                update(distributor_credentials)
                .where(distributor_credentials.c.client_id == client_id)
                .values(secret_hash=secret_hash, secret_rotated_at=self._clock())
            )
        log.info("distributor secret rotated", extra={"client_id": client_id})
        return credential, secret

    def revoke(self, client_id: str) -> DistributorCredential:
        """Stop the credential for good; revoking twice keeps the first revocation time."""
        with self._engine.begin() as conn:
            conn.execute(
                update(distributor_credentials)
                .where(
                    distributor_credentials.c.client_id == client_id,
                    distributor_credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=self._clock())
            )
            credential = self._find(conn, client_id)
        log.info("distributor revoked", extra={"client_id": client_id})
        return credential

    def webhook_secret(self, account_id: str) -> str:
        """The webhook secret of the distributor account's live credential."""
        with self._engine.connect() as conn:
            secret = conn.execute(
                select(distributor_webhook_secrets.c.secret)
                .join(
                    distributor_credentials,
                    distributor_credentials.c.client_id == distributor_webhook_secrets.c.client_id,
                )
                .where(
                    distributor_credentials.c.account_id == account_id,
                    distributor_credentials.c.revoked_at.is_(None),
                )
            ).scalar_one_or_none()
        if secret is None:
            raise NoWebhookSecret()
        return str(secret)

    def rotate_webhook_secret(self, account_id: str) -> str:
        """A new webhook secret for the distributor account's credential; the old one ends at once.

        A credential made before webhook secrets existed gets its first one here."""
        secret = _new_webhook_secret()
        with self._engine.begin() as conn:
            row = conn.execute(
                select(distributor_credentials.c.client_id, distributor_credentials.c.revoked_at).where(
                    distributor_credentials.c.account_id == account_id
                )
            ).one_or_none()
            if row is None:
                raise NoWebhookSecret()
            if row.revoked_at is not None:
                raise DistributorRevoked(row.client_id)
            replaced = conn.execute(
                update(distributor_webhook_secrets)
                .where(distributor_webhook_secrets.c.client_id == row.client_id)
                .values(secret=secret, created_at=self._clock())
            )
            if replaced.rowcount == 0:
                conn.execute(
                    insert(distributor_webhook_secrets).values(
                        client_id=row.client_id, secret=secret, created_at=self._clock()
                    )
                )
        log.info("distributor webhook secret rotated", extra={"client_id": row.client_id})
        return secret

    def list_distributors(self) -> list[DistributorCredential]:
        with self._engine.connect() as conn:
            rows = conn.execute(_credential_query().order_by(accounts.c.seq)).all()
        return [_to_credential(row) for row in rows]

    def issue_client_token(self, client_id: str, client_secret: str) -> AccessToken:
        """Client-credentials grant: an access token of kind "distributor" for the distributor account."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(
                    distributor_credentials.c.account_id,
                    distributor_credentials.c.scope,
                    distributor_credentials.c.secret_hash,
                    distributor_credentials.c.revoked_at,
                ).where(distributor_credentials.c.client_id == client_id)
            ).one_or_none()
        # Hash even for an unknown client so timing does not reveal which ids exist.
        secret_hash = row.secret_hash if row is not None else self._decoy_hash
        matches = self._matches(secret_hash, client_secret)
        if row is None or row.revoked_at is not None or not matches:
            log.info("client token refused", extra={"client_id": client_id[:40]})
            raise InvalidClientCredentials()
        if self._hasher.check_needs_rehash(row.secret_hash):
            with self._engine.begin() as conn:
                conn.execute(
                    update(distributor_credentials)
                    .where(distributor_credentials.c.client_id == client_id)
                    .values(secret_hash=self._hasher.hash(client_secret))
                )
        return self._issuer.issue(row.account_id, TokenKind.DISTRIBUTOR, row.scope.split())

    def _matches(self, secret_hash: str, secret: str) -> bool:
        try:
            return self._hasher.verify(secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    def _find(self, conn: Connection, client_id: str) -> DistributorCredential:
        row = conn.execute(
            _credential_query().where(distributor_credentials.c.client_id == client_id)
        ).one_or_none()
        if row is None:
            raise DistributorNotFound(client_id)
        return _to_credential(row)


def _credential_query() -> Select[Any]:
    return select(
        distributor_credentials.c.client_id,
        distributor_credentials.c.account_id,
        distributor_credentials.c.scope,
        distributor_credentials.c.created_at,
        distributor_credentials.c.revoked_at,
        accounts.c.display_name,
    ).join(accounts, accounts.c.account_id == distributor_credentials.c.account_id)


def _to_credential(row: Any) -> DistributorCredential:
    return DistributorCredential(
        client_id=row.client_id,
        account_id=row.account_id,
        display_name=row.display_name,
        scopes=tuple(row.scope.split()),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
