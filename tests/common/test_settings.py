from pathlib import Path

import pytest

from services.common.settings import GatewaySettings, QuotaSettings, SettingsError, load_settings


def test_defaults_run_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("EMETERAI_"):
            monkeypatch.delenv(key)
    settings = load_settings(QuotaSettings)
    assert settings.mode == "dev"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.quota_address.startswith("127.0.0.1:")


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMETERAI_SHUTDOWN_GRACE_S", "soon")
    monkeypatch.setenv("EMETERAI_QUOTA_ADDRESS", "no-port")
    monkeypatch.setenv("EMETERAI_HOLD_TTL_S", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings(QuotaSettings)
    message = str(caught.value)
    for name in ("EMETERAI_SHUTDOWN_GRACE_S", "EMETERAI_QUOTA_ADDRESS", "EMETERAI_HOLD_TTL_S"):
        assert name in message


def test_production_refuses_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMETERAI_MODE", "production")
    monkeypatch.delenv("EMETERAI_SERVICE_SECRET", raising=False)
    with pytest.raises(SettingsError, match="EMETERAI_SERVICE_SECRET"):
        load_settings(GatewaySettings)


def test_signer_addresses_are_a_comma_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMETERAI_SIGNER_ADDRESSES", "127.0.0.1:7001, 127.0.0.1:7002")
    monkeypatch.setenv("EMETERAI_DATA_DIR", str(tmp_path))
    settings = load_settings(GatewaySettings)
    assert settings.signer_addresses == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert settings.resolved_document_store_dir == tmp_path / "documents"
