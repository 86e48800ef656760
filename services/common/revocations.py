"""Revoked access tokens, as every service sees them: the sign-out list in Redis.

An access token is checked locally (signature, expiry, audience), so signing out must reach every
replica of every service that accepts it. The auth service records each signed-out token's id in
its database and, with EMETERAI_REDIS_URL, in Redis until the token would have expired anyway;
each verifier asks Redis about every user token it is shown.

Deliberate behaviour when Redis cannot be reached: tokens are accepted (and a warning logged). A
Redis outage must not sign every user out at once; the worst it allows is a signed-out token
working until it expires, at most the access-token lifetime (15 minutes). Without Redis at all (the
single-node default) no verifier but the auth service's sees sign-outs, with the same bound.

A verifier remembers that a token was not revoked for FRESH_S seconds, and asks once for all the
requests that carry the same token at the same moment: a surge of requests must not become a
surge of Redis round trips. A sign-out therefore reaches every replica within FRESH_S.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis

from services.common.redis_state import async_redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "emeterai:revoked:"
FRESH_S = 2.0
# Remembered answers kept before the old ones are swept out.
_SWEEP_AT = 50_000


def revoke_token(client: redis.Redis, token_id: str, expires_at: int) -> None:
    """Add token_id to the list until expires_at (Unix seconds), when the token is refused anyway.

    Raises redis.RedisError when Redis cannot be reached: the caller decides what that means.
    """
    if expires_at > time.time():
        client.set(KEY_PREFIX + token_id, b"1", exat=expires_at)


class RevokedTokens:
    """The shared list of revoked access-token ids, as a verifier reads it."""

    def __init__(self, redis_url: str, fresh_s: float = FRESH_S) -> None:
        self._reader = async_redis_client(redis_url)
        self._fresh_s = fresh_s
        # token id -> when Redis last said it was not revoked
        self._not_revoked: dict[str, float] = {}
        self._asking: dict[str, asyncio.Future[bool]] = {}

    async def is_revoked(self, token_id: str) -> bool:
        now = time.monotonic()
        if now - self._not_revoked.get(token_id, -self._fresh_s) < self._fresh_s:
            return False
        asking = self._asking.get(token_id)
        if asking is not None:
            return await asyncio.shield(asking)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asking[token_id] = future
        try:
            revoked = await self._ask(token_id)
            future.set_result(revoked)
        finally:
            del self._asking[token_id]
            if not future.done():
                future.set_result(False)
        if not revoked:
            if len(self._not_revoked) > _SWEEP_AT:
                self._not_revoked = {t: at for t, at in self._not_revoked.items() if now - at < self._fresh_s}
            self._not_revoked[token_id] = now
        return revoked

    async def _ask(self, token_id: str) -> bool:
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
