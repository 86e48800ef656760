"""The operator role: granted by phone number, carried by tokens, withdrawn with the sessions."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.errors import InvalidRefreshToken
from services.auth.keys import Keyring
from services.auth.model import AccountKind
from services.common.settings import AuthSettings
from tests.conftest import FakeClock

from .conftest import decode_with_jwks, last_code

PHONE = "+6281500001111"


def _sign_in(domain: AuthDomain) -> tuple[str, str]:
    domain.otp.request_code(PHONE)
    tokens, _, _ = domain.otp.verify_code(PHONE, last_code(domain, PHONE))
    return tokens.access_token, tokens.refresh_token


def test_an_operator_signs_in_by_phone_and_gets_operator_tokens(
    domain: AuthDomain, settings: AuthSettings
) -> None:
    granted = domain.operators.set_operator("0815-0000-1111", True)
    assert granted.kind is AccountKind.OPERATOR and granted.phone == PHONE
    access, _ = _sign_in(domain)
    assert decode_with_jwks(domain, settings, access)["kind"] == "operator"
    assert [a.phone for a in domain.operators.list_operators()] == [PHONE]


def test_withdrawing_the_role_ends_every_session(
    settings: AuthSettings, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> None:
    # No resend cool-down, so the same number signs in twice here.
    settings = settings.model_copy(update={"otp_resend_after_s": 0})
    domain = build_auth_domain(settings, engine, keyring, clock=clock, password_hasher=hasher)
    domain.operators.set_operator(PHONE, True)
    _, refresh = _sign_in(domain)
    demoted = domain.operators.set_operator(PHONE, False)
    assert demoted.kind is AccountKind.RETAIL
    with pytest.raises(InvalidRefreshToken):
        domain.sessions.refresh(refresh)
    assert domain.operators.list_operators() == []
    access, _ = _sign_in(domain)
    assert decode_with_jwks(domain, settings, access)["kind"] == "retail"
