"""The WhatsApp and SMS channels against a stand-in provider on 127.0.0.1: what they send, how a
refusal falls back, and that neither the code nor a token reaches the logs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.domain import build_auth_domain
from services.auth.errors import NotifierUnavailable
from services.auth.keys import Keyring
from services.auth.notifiers import DeliveryFailed, FallbackNotifier, SmsNotifier, WhatsAppNotifier
from services.common.settings import AuthSettings
from tests.conftest import FakeClock

from .conftest import SERVICE_SECRET

PHONE = "+6281234567890"


@dataclass
class Provider:
    """Answers each path with the status set for it, and keeps what it was sent."""

    url: str
    statuses: dict[str, int] = field(default_factory=dict)
    received: list[tuple[str, dict[str, str], dict[str, object]]] = field(default_factory=list)


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append((self.path, dict(self.headers), body))
            status = state.statuses.get(self.path, 200)
            answer = json.dumps(
                {"messages": [{"id": "wamid.1"}]} if status == 200 else {"error": body}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            """Quiet: http.server would print each request to stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def test_whatsapp_sends_the_authentication_template(provider: Provider) -> None:
    channel = WhatsAppNotifier(
        f"{provider.url}/v21.0/1234/messages", "wa-secret", "emeterai_kode_masuk", "id"
    )
    channel.send_code(PHONE, "123456", 300)
    [(path, headers, body)] = provider.received
    assert path == "/v21.0/1234/messages"
    assert headers["Authorization"] == "Bearer wa-secret"
    assert body["to"] == "6281234567890" and body["type"] == "template"
    template = body["template"]
    assert template["name"] == "emeterai_kode_masuk" and template["language"] == {"code": "id"}
    assert [c["parameters"][0]["text"] for c in template["components"]] == ["123456", "123456"]


def test_sms_sends_the_text(provider: Provider) -> None:
    SmsNotifier(f"{provider.url}/sms", "sms-secret").send_code(PHONE, "654321", 300)
    [(_, headers, body)] = provider.received
    assert headers["Authorization"] == "Bearer sms-secret"
    assert body["to"] == PHONE and "654321" in body["message"] and "5 menit" in body["message"]


def test_a_refusal_names_the_status_never_the_message(provider: Provider) -> None:
    provider.statuses["/sms"] = 400
    with pytest.raises(DeliveryFailed) as refused:
        SmsNotifier(f"{provider.url}/sms", "sms-secret").send_code(PHONE, "654321", 300)
    assert "400" in str(refused.value) and "654321" not in str(refused.value)


def test_whatsapp_down_falls_back_to_sms(provider: Provider) -> None:
    provider.statuses["/wa"] = 503
    both = FallbackNotifier(
        [WhatsAppNotifier(f"{provider.url}/wa", "t", "tpl", "id"), SmsNotifier(f"{provider.url}/sms", "t")]
    )
    both.send_code(PHONE, "111222", 300)
    assert [path for path, _, _ in provider.received] == ["/wa", "/sms"]
    provider.statuses["/sms"] = 500
    with pytest.raises(DeliveryFailed):
        both.send_code(PHONE, "111222", 300)


def test_sign_in_over_whatsapp_and_nothing_secret_in_the_logs(
    provider: Provider,
    tmp_path: Path,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = AuthSettings(
        mode="production",
        data_dir=tmp_path,
        service_secret=SERVICE_SECRET,
        notifier="whatsapp",
        whatsapp_api_url=f"{provider.url}/wa",
        whatsapp_token="wa-secret-token",
        sms_api_url=f"{provider.url}/sms",
        sms_token="sms-secret-token",
    )
    domain = build_auth_domain(settings, engine, keyring, clock=clock, password_hasher=hasher)
    provider.statuses["/wa"] = 500
    domain.otp.request_code(PHONE, "198.51.100.7")
    code = str(provider.received[-1][2]["message"]).split(": ")[1][:6]
    signed_in = domain.otp.verify_code(PHONE, code, "198.51.100.7")
    # Both channels down: the user is told to try again, and no cool-down holds them back.
    provider.statuses["/sms"] = 500
    clock.advance(61)
    with pytest.raises(NotifierUnavailable):
        domain.otp.request_code(PHONE, "198.51.100.7")
    secrets = [
        code,
        "wa-secret-token",
        "sms-secret-token",
        signed_in.tokens.access_token,
        signed_in.tokens.refresh_token,
    ]
    for secret in secrets:
        assert secret not in caplog.text
