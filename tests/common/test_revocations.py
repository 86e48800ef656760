"""Signed-out access tokens are refused by every verifier that shares the list in Redis (real Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.errors import Unauthenticated
from services.common.redis_state import redis_client
from services.common.revocations import KEY_PREFIX, RevokedTokens, revoke_token
from services.common.tokens import StaticKeys, TokenVerifier
from tests.conftest import free_port

ISSUER, AUDIENCE = "emeterai-auth", "emeterai"


def _token(key: Ed25519PrivateKey, kind: str = "retail") -> tuple[str, str, int]:
    now, jti = int(time.time()), uuid.uuid4().hex
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "acc_1",
        "kind": kind,
        "jti": jti,
        "iat": now,
        "exp": now + 300,
    }
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"}), jti, now + 300


def _verifier(key: Ed25519PrivateKey, revoked: RevokedTokens) -> TokenVerifier:
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    keys = StaticKeys([{**jwk, "kid": "k1"}])
    return TokenVerifier(keys, ISSUER, AUDIENCE, revoked=revoked)


async def test_a_revoked_token_is_refused_by_every_replica_even_once_cached(redis_url: str) -> None:
    key = Ed25519PrivateKey.generate()
    signed_out = redis_client(redis_url)
    replicas = [_verifier(key, RevokedTokens(redis_url, fresh_s=0.5)) for _ in range(2)]
    token, jti, expires = _token(key)
    other, _, _ = _token(key)
    for replica in replicas:
        assert (await replica.verify(token)).token_id == jti
    revoke_token(signed_out, jti, expires)
    # Within the freshness window a replica still goes by Redis's last answer; after it, never.
    assert (await replicas[0].verify(token)).token_id == jti
    await asyncio.sleep(0.6)
    for replica in replicas:
        with pytest.raises(Unauthenticated, match="revoked"):
            await replica.verify(token)
        assert (await replica.verify(other)).subject == "acc_1"
    signed_out.close()


async def test_many_requests_with_one_token_ask_redis_once(redis_url: str) -> None:
    revoked = RevokedTokens(redis_url)
    jti = uuid.uuid4().hex
    before = redis.Redis.from_url(redis_url).info("commandstats").get("cmdstat_exists", {}).get("calls", 0)
    answers = await asyncio.gather(*(revoked.is_revoked(jti) for _ in range(200)))
    after = redis.Redis.from_url(redis_url).info("commandstats").get("cmdstat_exists", {}).get("calls", 0)
    assert answers == [False] * 200
    # Other tests may share the server: a handful of their calls, not 200 of ours.
    assert after - before < 20
    await revoked.close()


async def test_the_list_forgets_a_token_once_it_would_have_expired(redis_url: str) -> None:
    revoked = RevokedTokens(redis_url)
    jti = uuid.uuid4().hex
    revoke_token(redis_client(redis_url), jti, int(time.time()) + 2)
    assert await revoked.is_revoked(jti)
    assert 0 < redis.Redis.from_url(redis_url).ttl(KEY_PREFIX + jti) <= 2
    # A token already expired is not worth a key.
    gone = uuid.uuid4().hex
    revoke_token(redis_client(redis_url), gone, int(time.time()) - 1)
    assert not await revoked.is_revoked(gone)
    await revoked.close()


async def test_without_redis_tokens_are_still_accepted(caplog: pytest.LogCaptureFixture) -> None:
    key = Ed25519PrivateKey.generate()
    away = RevokedTokens(f"redis://127.0.0.1:{free_port()}/0")
    token, jti, _ = _token(key)
    # Deliberate: a Redis outage must not sign everyone out; the token still expires on time.
    assert (await _verifier(key, away).verify(token)).token_id == jti
    assert "revoked tokens cannot be checked" in caplog.text
    await away.close()
