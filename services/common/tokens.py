"""Verifying access tokens locally, in every service, against the auth service's published keys.

Tokens are JWTs signed with Ed25519 (EdDSA). Each names its key by `kid`; verifiers cache the
JWKS and fetch it again only when a token names a key they have not seen (key rotation).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import jwt

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.common.errors import Unauthenticated, Unavailable
from services.common.revocations import RevokedTokens, revoked_tokens
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

KIND_RETAIL = "retail"
KIND_DISTRIBUTOR = "distributor"
KIND_OPERATOR = "operator"
KIND_SERVICE = "service"
KINDS = frozenset({KIND_RETAIL, KIND_DISTRIBUTOR, KIND_OPERATOR, KIND_SERVICE})


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    kind: str
    scopes: frozenset[str]
    token_id: str
    expires_at: int

    @property
    def account_id(self) -> str:
        """The account the token acts for; services act for no account."""
        return "" if self.kind == KIND_SERVICE else self.subject


class KeySource(Protocol):
    async def public_key(self, kid: str) -> Any | None: ...


class StaticKeys:
    """Keys known up front: the auth service's own keyring, or a test's."""

    def __init__(self, jwks: Iterable[Mapping[str, str]]) -> None:
        self._keys = {k["kid"]: jwt.PyJWK(dict(k)).key for k in jwks}

    async def public_key(self, kid: str) -> Any | None:
        return self._keys.get(kid)


class RemoteJwks:
    """The auth service's JWKS, fetched over gRPC and cached.

    An unknown kid triggers at most one refetch per `refetch_interval_s`, so a flood of tokens
    with made-up key ids cannot turn into a flood of calls to the auth service.
    """

    def __init__(self, auth_address: str, refetch_interval_s: float = 10.0) -> None:
        self._address = auth_address
        self._channel: grpc.aio.Channel | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._interval = refetch_interval_s
        self._lock = asyncio.Lock()
        # Whether the last fetch failed: an unknown kid is then unknown for want of asking.
        self._unreachable = False

    async def public_key(self, kid: str) -> Any | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self._interval:
                await self._fetch()
        key = self._keys.get(kid)
        if key is None and self._unreachable:
            # The token may well be good (signed with a key made since the last fetch): while the
            # auth service cannot be asked, say so, rather than sign its holder out with a 401.
            raise Unavailable("token keys cannot be fetched right now; try again shortly")
        return key

    async def _fetch(self) -> None:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._address)
        stub = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        try:
            response = await stub.GetJwks(auth_service_pb2.GetJwksRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not fetch signing keys from the auth service", extra={"code": exc.code().name})
            self._unreachable = True
            return
        finally:
            self._fetched_at = time.monotonic()
        self._unreachable = False
        self._keys = {
            k.kid: jwt.PyJWK({"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid}).key for k in response.keys
        }

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class TokenVerifier:
    # Tokens already verified, until they expire: a caller (a service token above all) sends the
    # same token with thousands of calls, and an Ed25519 check on each was a tenth of the quota
    # service's CPU. A key dropped from the JWKS stops new tokens at once and cached ones at their
    # expiry. Anything checked per call rather than per token (revocation) goes in verify.
    CACHE_SIZE = 4096

    def __init__(
        self,
        keys: KeySource,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        clock: Callable[[], float] = time.time,
        revoked: RevokedTokens | None = None,
    ) -> None:
        """revoked: the shared list of signed-out tokens, asked about every user token."""
        self._keys = keys
        self._revoked = revoked
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._clock = clock
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated for anything else."""
        principal = self._verified.get(token)
        if principal is not None and self._clock() >= principal.expires_at + self._leeway:
            del self._verified[token]
            principal = None
        if principal is not None:
            self._verified.move_to_end(token)
        else:
            principal = await self._verify_signature(token)
            self._verified[token] = principal
            if len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        # Service tokens are not signed out; a user's may be, at any moment, so this is per call.
        if (
            self._revoked is not None
            and principal.kind != KIND_SERVICE
            and await self._revoked.is_revoked(principal.token_id)
        ):
            raise Unauthenticated("token has been revoked; sign in again")
        return principal

    async def _verify_signature(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        # Only our own algorithm: refuse "none", HMAC confusion and anything else up front.
        if header.get("alg") != "EdDSA" or not isinstance(header.get("kid"), str):
            raise Unauthenticated("token is not signed with a known key")
        key = await self._keys.public_key(header["kid"])
        if key is None:
            raise Unauthenticated("token is not signed with a known key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["EdDSA"],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("token is invalid") from None
        kind = claims.get("kind")
        if kind not in KINDS:
            raise Unauthenticated("token is invalid")
        return Principal(
            subject=str(claims["sub"]),
            kind=kind,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )


def token_verifier(settings: CommonSettings, keys: KeySource) -> TokenVerifier:
    """The verifier a service runs: its settings' issuer and audience, and the shared list of
    signed-out tokens when Redis is configured."""
    return TokenVerifier(
        keys, settings.token_issuer, settings.token_audience, revoked=revoked_tokens(settings.redis_url)
    )


def bearer_token(value: str | None) -> str:
    """The token from an `authorization: Bearer <token>` value."""
    scheme, _, token = (value or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    return token.strip()
