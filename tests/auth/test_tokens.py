from __future__ import annotations

import asyncio
import secrets

import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.errors import InvalidRefreshToken, InvalidServiceCredentials, RefreshTokenReused
from services.auth.keys import Keyring
from services.auth.model import TokenKind, TokenPair
from services.common.errors import InvalidInput, Unauthenticated
from services.common.revocations import FRESH_S
from services.common.settings import AuthSettings
from services.common.tokens import StaticKeys, token_verifier
from tests.conftest import FakeClock

from .conftest import SERVICE_SECRET, decode_with_jwks, last_code

PHONE = "+6281298765432"


def _sign_in(domain: AuthDomain, phone: str = PHONE) -> tuple[TokenPair, str]:
    domain.otp.request_code(phone)
    tokens, account, _ = domain.otp.verify_code(phone, last_code(domain, phone))
    return tokens, account.account_id


def test_access_token_carries_the_contract_claims(domain: AuthDomain, settings: AuthSettings) -> None:
    tokens, account_id = _sign_in(domain)
    header = jwt.get_unverified_header(tokens.access_token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == domain.keyring.current.kid
    claims = decode_with_jwks(domain, settings, tokens.access_token)
    assert claims["iss"] == "emeterai-auth"
    assert claims["aud"] == "emeterai"
    assert claims["sub"] == account_id
    assert claims["kind"] == "retail"
    assert claims["scope"] == ""
    assert len(claims["jti"]) >= 16
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s == tokens.expires_in_s


def test_each_token_has_its_own_id(domain: AuthDomain, settings: AuthSettings) -> None:
    one = domain.issuer.issue("acc_x", TokenKind.OPERATOR, ["refunds", "audit", "refunds"])
    two = domain.issuer.issue("acc_x", TokenKind.OPERATOR)
    assert one.jti != two.jti
    assert decode_with_jwks(domain, settings, one.token)["scope"] == "audit refunds"


def test_refresh_rotates_the_pair(domain: AuthDomain, settings: AuthSettings) -> None:
    first, account_id = _sign_in(domain)
    second = domain.sessions.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    claims = decode_with_jwks(domain, settings, second.access_token)
    assert (claims["sub"], claims["kind"]) == (account_id, "retail")
    third = domain.sessions.refresh(second.refresh_token)
    assert third.refresh_token not in {first.refresh_token, second.refresh_token}


def test_reusing_a_spent_refresh_token_revokes_the_family(domain: AuthDomain) -> None:
    first, _ = _sign_in(domain)
    second = domain.sessions.refresh(first.refresh_token)
    with pytest.raises(RefreshTokenReused):
        domain.sessions.refresh(first.refresh_token)
    # The thief and the user share one family; the newest token is dead too.
    with pytest.raises(InvalidRefreshToken):
        domain.sessions.refresh(second.refresh_token)


def test_reuse_leaves_other_sign_ins_alone(domain: AuthDomain, clock: FakeClock) -> None:
    phone_session, _ = _sign_in(domain)
    clock.advance(61)
    laptop_session, _ = _sign_in(domain)
    domain.sessions.refresh(phone_session.refresh_token)
    with pytest.raises(RefreshTokenReused):
        domain.sessions.refresh(phone_session.refresh_token)
    assert domain.sessions.refresh(laptop_session.refresh_token).refresh_token


def test_refresh_token_expires(domain: AuthDomain, clock: FakeClock, settings: AuthSettings) -> None:
    tokens, _ = _sign_in(domain)
    clock.advance(settings.refresh_token_ttl_s)
    with pytest.raises(InvalidRefreshToken):
        domain.sessions.refresh(tokens.refresh_token)


@pytest.mark.parametrize("token", ["", "rt_made-up", "not even close"])
def test_unknown_refresh_token(domain: AuthDomain, token: str) -> None:
    with pytest.raises(InvalidRefreshToken):
        domain.sessions.refresh(token)


def test_sign_out_revokes_both_tokens(domain: AuthDomain) -> None:
    tokens, _ = _sign_in(domain)
    jti = jwt.decode(tokens.access_token, options={"verify_signature": False})["jti"]
    domain.sessions.revoke(tokens.refresh_token, tokens.access_token)
    assert domain.sessions.is_access_token_revoked(jti)
    with pytest.raises(InvalidRefreshToken):
        domain.sessions.refresh(tokens.refresh_token)
    # Signing out again, or with a token we never issued, is still a success.
    domain.sessions.revoke(tokens.refresh_token, tokens.access_token)
    domain.sessions.revoke("rt_unknown")
    with pytest.raises(InvalidInput):
        domain.sessions.revoke("", "")


def test_service_token(domain: AuthDomain, settings: AuthSettings) -> None:
    issued = domain.service_identity.issue_service_token("gateway", SERVICE_SECRET)
    claims = decode_with_jwks(domain, settings, issued.token)
    assert (claims["sub"], claims["kind"], claims["scope"]) == ("service:gateway", "service", "")
    assert issued.expires_in_s == settings.access_token_ttl_s


@pytest.mark.parametrize("secret", ["", "wrong", SERVICE_SECRET + "x", SERVICE_SECRET[:-1]])
def test_service_token_needs_the_secret(domain: AuthDomain, secret: str) -> None:
    with pytest.raises(InvalidServiceCredentials):
        domain.service_identity.issue_service_token("gateway", secret)


@pytest.mark.parametrize("name", ["", "Gateway", "quota_service", "gateway-", "-x", "a" * 41, "signer2"])
def test_service_names_are_lowercase_words(domain: AuthDomain, name: str) -> None:
    with pytest.raises(InvalidInput):
        domain.service_identity.issue_service_token(name, SERVICE_SECRET)


async def test_sign_out_reaches_every_service_through_redis(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    redis_url: str,
) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url})
    domain = build_auth_domain(shared, engine, keyring, clock=clock, password_hasher=hasher)
    # Its own number: Redis keeps each number's hourly allowance across test runs.
    tokens, _ = _sign_in(domain, f"+62813{secrets.randbelow(10**8):08d}")
    # What the gateway runs: local checks against the published keys, plus the shared list.
    gateway = token_verifier(shared, StaticKeys(keyring.jwks()))
    assert (await gateway.verify(tokens.access_token)).kind == "retail"
    domain.sessions.revoke(tokens.refresh_token, tokens.access_token)
    # A verifier goes by Redis's last "not revoked" for at most FRESH_S.
    await asyncio.sleep(FRESH_S)
    with pytest.raises(Unauthenticated, match="revoked"):
        await gateway.verify(tokens.access_token)
