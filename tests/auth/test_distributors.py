from __future__ import annotations

import jwt
import pytest
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from services.auth.domain import AuthDomain
from services.auth.errors import (
    DistributorNotFound,
    DistributorRevoked,
    InvalidClientCredentials,
    NoWebhookSecret,
)
from services.auth.model import AccountKind
from services.auth.store import distributor_credentials, distributor_webhook_secrets
from services.common.errors import InvalidInput
from services.common.settings import AuthSettings

from .conftest import decode_with_jwks


def test_client_credentials_grant(domain: AuthDomain, settings: AuthSettings, engine: Engine) -> None:
    credential, secret = domain.distributors.create_distributor(
        " PT Contoh ", ["stamps:write", "orders", "orders"]
    )
    assert credential.scopes == ("orders", "stamps:write")
    assert credential.display_name == "PT Contoh"
    assert credential.revoked_at is None
    assert domain.accounts.get_account(credential.account_id).kind is AccountKind.DISTRIBUTOR
    with engine.connect() as conn:
        stored = conn.execute(select(distributor_credentials.c.secret_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and secret not in stored

    token = domain.distributors.issue_client_token(credential.client_id, secret)
    claims = decode_with_jwks(domain, settings, token.token)
    assert claims["sub"] == credential.account_id
    assert claims["kind"] == "distributor"
    assert claims["scope"] == "orders stamps:write"
    assert token.token_type == "Bearer"


def test_wrong_unknown_and_revoked_clients_look_the_same(domain: AuthDomain) -> None:
    credential, secret = domain.distributors.create_distributor("PT Contoh", [])
    messages = set()
    for client_id, attempt in [
        (credential.client_id, secret + "x"),
        (credential.client_id, ""),
        ("cli_doesnotexist", secret),
    ]:
        with pytest.raises(InvalidClientCredentials) as refused:
            domain.distributors.issue_client_token(client_id, attempt)
        messages.add(refused.value.message)
    revoked = domain.distributors.revoke(credential.client_id)
    assert revoked.revoked_at is not None
    with pytest.raises(InvalidClientCredentials) as refused:
        domain.distributors.issue_client_token(credential.client_id, secret)
    messages.add(refused.value.message)
    assert len(messages) == 1
    # Revoking again keeps the first time; rotating a revoked client is refused.
    assert domain.distributors.revoke(credential.client_id).revoked_at == revoked.revoked_at
    with pytest.raises(DistributorRevoked):
        domain.distributors.rotate_secret(credential.client_id)


def test_rotation_retires_the_old_secret(domain: AuthDomain) -> None:
    credential, old = domain.distributors.create_distributor("PT Contoh", ["orders"])
    rotated, new = domain.distributors.rotate_secret(credential.client_id)
    assert new != old and rotated.client_id == credential.client_id
    with pytest.raises(InvalidClientCredentials):
        domain.distributors.issue_client_token(credential.client_id, old)
    jwt.get_unverified_header(domain.distributors.issue_client_token(credential.client_id, new).token)


def test_list_and_unknown(domain: AuthDomain) -> None:
    a, _ = domain.distributors.create_distributor("PT Satu", [])
    b, _ = domain.distributors.create_distributor("PT Dua", [])
    assert [c.client_id for c in domain.distributors.list_distributors()] == [a.client_id, b.client_id]
    with pytest.raises(DistributorNotFound):
        domain.distributors.revoke("cli_nope")
    with pytest.raises(DistributorNotFound):
        domain.distributors.rotate_secret("cli_nope")


@pytest.mark.parametrize(("name", "scopes"), [("", []), ("PT Contoh", ["Stamps"]), ("PT Contoh", ["a b"])])
def test_create_checks_its_input(domain: AuthDomain, name: str, scopes: list[str]) -> None:
    with pytest.raises(InvalidInput):
        domain.distributors.create_distributor(name, scopes)


def test_webhook_secret_is_made_with_the_credential_and_outlives_client_secret_rotation(
    domain: AuthDomain,
) -> None:
    credential, _ = domain.distributors.create_distributor("PT Contoh", [])
    other, _ = domain.distributors.create_distributor("PT Lain", [])
    first = domain.distributors.webhook_secret(credential.account_id)
    assert first.startswith("emwhsec_") and len(first) > 40
    assert first != domain.distributors.webhook_secret(other.account_id)
    # An operator rotating the client secret must not break the distributor's signature checks.
    domain.distributors.rotate_secret(credential.client_id)
    assert domain.distributors.webhook_secret(credential.account_id) == first

    second = domain.distributors.rotate_webhook_secret(credential.account_id)
    assert second != first
    assert domain.distributors.webhook_secret(credential.account_id) == second

    domain.distributors.revoke(credential.client_id)
    with pytest.raises(NoWebhookSecret):
        domain.distributors.webhook_secret(credential.account_id)
    with pytest.raises(DistributorRevoked):
        domain.distributors.rotate_webhook_secret(credential.account_id)
    for unknown in ("acc_nobody", ""):
        with pytest.raises(NoWebhookSecret):
            domain.distributors.webhook_secret(unknown)
        with pytest.raises(NoWebhookSecret):
            domain.distributors.rotate_webhook_secret(unknown)


def test_a_credential_from_before_webhook_secrets_gets_its_first_on_rotation(
    domain: AuthDomain, engine: Engine
) -> None:
    credential, _ = domain.distributors.create_distributor("PT Lama", [])
    with engine.begin() as conn:
        conn.execute(delete(distributor_webhook_secrets))
    with pytest.raises(NoWebhookSecret):
        domain.distributors.webhook_secret(credential.account_id)
    made = domain.distributors.rotate_webhook_secret(credential.account_id)
    assert domain.distributors.webhook_secret(credential.account_id) == made
