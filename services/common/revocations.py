"""Revoked access tokens, as every service sees them: the sign-out list in Redis.

An access token is checked locally (signature, expiry, audience), so signing out must reach every
replica of every service that accepts it. The auth service records each signed-out token's id in
its database and, with EMETERAI_REDIS_URL, in Redis until the token would have expired anyway;
each verifier asks Redis about every user token it is shown.

Deliberate behaviour when Redis cannot be reached: tokens are accepted (and a warning logged). A
Redis outage must not sign every user out at once; the worst it allows is a signed-out token
working until it expires, at most the access-token lifetime (15 minutes). Without Redis at all (the
single-node default) no verifier but the auth service's sees sign-outs, with the same bound.
"""

from __future__ import annotations

import logging
import time

import redis

from services.common.redis_state import async_redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "emeterai:revoked:"


def revoke_token(client: redis.Redis, token_id: str, expires_at: int) -> None:
    """Add token_id to the list until expires_at (Unix seconds), when the token is refused anyway.

    Raises redis.RedisError when Redis cannot be reached: the caller decides what that means.
    """
    if expires_at > time.time():
        client.set(KEY_PREFIX + token_id, b"1", exat=expires_at)


class RevokedTokens:
    """The shared list of revoked access-token ids, as a verifier reads it."""

    def __init__(self, redis_url: str) -> None:
        self._reader = async_redis_client(redis_url)

    async def is_revoked(self, token_id: str) -> bool:
        try:
            return bool(await self._reader.exists(KEY_PREFIX + token_id))
        except redis.RedisError as exc:
            log.warning("revoked tokens cannot be checked", extra={"error_type": type(exc).__name__})
            return False

    async def close(self) -> None:
        await self._reader.aclose()


def revoked_tokens(redis_url: str) -> RevokedTokens | None:
    """The shared list when Redis is configured, else None (single node)."""
    return RevokedTokens(redis_url) if redis_url else None
