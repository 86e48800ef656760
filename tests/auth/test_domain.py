from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from services.auth.domain import CODE_KEY_FILE, build_auth_domain
from services.auth.keys import Keyring
from services.common.settings import AuthSettings, SettingsError

from .conftest import SERVICE_SECRET


def test_dev_mode_builds_the_outbox_and_a_code_key(
    settings: AuthSettings, engine: Engine, keyring: Keyring
) -> None:
    domain = build_auth_domain(settings, engine, keyring)
    assert domain.outbox is not None
    assert (settings.resolved_jwt_key_dir / CODE_KEY_FILE).stat().st_size == 32


def test_production_refuses_the_outbox(tmp_path: Path, engine: Engine, keyring: Keyring) -> None:
    production = AuthSettings(mode="production", data_dir=tmp_path, service_secret=SERVICE_SECRET)
    with pytest.raises(SettingsError, match="only works in dev mode"):
        build_auth_domain(production, engine, keyring)


def test_whatsapp_needs_its_endpoint_and_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EMETERAI_WHATSAPP_API_URL"):
        AuthSettings(data_dir=tmp_path, notifier="whatsapp")
    with pytest.raises(ValueError, match="EMETERAI_SMS_TOKEN"):
        AuthSettings(data_dir=tmp_path, sms_api_url="http://127.0.0.1:9/sms")


def test_production_sends_codes_by_whatsapp_then_sms(
    tmp_path: Path, engine: Engine, keyring: Keyring
) -> None:
    production = AuthSettings(
        mode="production",
        data_dir=tmp_path,
        service_secret=SERVICE_SECRET,
        notifier="whatsapp",
        whatsapp_api_url="http://127.0.0.1:9/v21.0/1234/messages",
        whatsapp_token="wa-token",
        sms_api_url="http://127.0.0.1:9/sms",
        sms_token="sms-token",
    )
    domain = build_auth_domain(production, engine, keyring)
    assert domain.outbox is None
