from __future__ import annotations

import logging
import re
import secrets

import pytest
import redis
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.codes import RedisCodeStore
from services.auth.domain import AuthDomain, build_auth_domain
from services.auth.errors import (
    CodeExpired,
    InvalidPhone,
    NoPendingCode,
    NotifierUnavailable,
    ResendTooSoon,
    TooManyAttempts,
    TooManyRequests,
    WrongCode,
)
from services.auth.keys import Keyring
from services.auth.model import AccountKind
from services.common.errors import InvalidInput, Unavailable
from services.common.settings import AuthSettings
from tests.conftest import FakeClock, free_port

from .conftest import last_code

PHONE = "+6281234567890"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_first_sign_in_creates_a_retail_account(domain: AuthDomain) -> None:
    sent = domain.otp.request_code("0812-3456-7890", "198.51.100.7")
    assert sent == (PHONE, 300, 60)
    assert domain.outbox is not None
    [message] = domain.outbox.list_outbox(PHONE)
    code = last_code(domain, PHONE)
    assert (
        message.body
        == f"Kode e-meterai Anda: {code}. Berlaku 5 menit. Jangan berikan kode ini kepada siapa pun."
    )
    assert message.channel == "whatsapp"

    tokens, account, created = domain.otp.verify_code("+62 812 3456 7890", code, "198.51.100.7")
    assert created
    assert account.kind is AccountKind.RETAIL
    assert account.phone == PHONE
    assert account.account_id.startswith("acc_")
    assert tokens.access_token and tokens.refresh_token.startswith("rt_")
    assert domain.accounts.get_account(account.account_id) == account


def test_next_sign_in_finds_the_same_account(domain: AuthDomain, clock: FakeClock) -> None:
    domain.otp.request_code(PHONE)
    first = domain.otp.verify_code(PHONE, last_code(domain, PHONE))
    clock.advance(61)
    domain.otp.request_code(PHONE)
    again = domain.otp.verify_code(PHONE, last_code(domain, PHONE))
    assert not again.created
    assert again.account.account_id == first.account.account_id


def test_a_code_works_once(domain: AuthDomain) -> None:
    domain.otp.request_code(PHONE)
    code = last_code(domain, PHONE)
    domain.otp.verify_code(PHONE, code)
    with pytest.raises(NoPendingCode):
        domain.otp.verify_code(PHONE, code)


def test_five_wrong_codes_lock_the_code(domain: AuthDomain) -> None:
    domain.otp.request_code(PHONE)
    code = last_code(domain, PHONE)
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongCode) as wrong:
            domain.otp.verify_code(PHONE, _wrong(code))
        assert wrong.value.attempts_left == left
    with pytest.raises(TooManyAttempts):
        domain.otp.verify_code(PHONE, _wrong(code))
    # Locked: even the right code is refused now.
    with pytest.raises(TooManyAttempts):
        domain.otp.verify_code(PHONE, code)


def test_resend_waits_for_the_cool_down(domain: AuthDomain, clock: FakeClock) -> None:
    domain.otp.request_code(PHONE)
    first = last_code(domain, PHONE)
    clock.advance(20)
    with pytest.raises(ResendTooSoon) as early:
        domain.otp.request_code("081234567890")
    assert early.value.retry_after_s == 40
    clock.advance(40)
    domain.otp.request_code(PHONE)
    second = last_code(domain, PHONE)
    assert domain.outbox is not None and len(domain.outbox.list_outbox(PHONE)) == 2
    # The new code replaces the old one.
    if first != second:
        with pytest.raises(WrongCode):
            domain.otp.verify_code(PHONE, first)
    assert domain.otp.verify_code(PHONE, second).account.phone == PHONE


def test_a_code_expires(domain: AuthDomain, clock: FakeClock) -> None:
    domain.otp.request_code(PHONE)
    code = last_code(domain, PHONE)
    clock.advance(300)
    with pytest.raises(CodeExpired):
        domain.otp.verify_code(PHONE, code)


def test_verify_without_a_request(domain: AuthDomain) -> None:
    with pytest.raises(NoPendingCode):
        domain.otp.verify_code(PHONE, "123456")


def test_bad_input_is_refused_before_anything_is_stored(domain: AuthDomain) -> None:
    with pytest.raises(InvalidPhone):
        domain.otp.request_code("021-5551234")
    domain.otp.request_code(PHONE)
    with pytest.raises(InvalidInput, match="6 digits"):
        domain.otp.verify_code(PHONE, "12345")


class _DownOnce:
    """A channel that refuses its first message, like a provider having a bad minute."""

    def __init__(self) -> None:
        self.calls = 0
        self.delivered: list[tuple[str, str]] = []

    def send_code(self, phone: str, code: str, ttl_s: int) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError(f"provider said no to {code}")
        self.delivered.append((phone, code))


def test_failed_delivery_withdraws_the_code(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = _DownOnce()
    domain = build_auth_domain(
        settings, engine, keyring, notifier=notifier, clock=clock, password_hasher=hasher
    )
    assert domain.outbox is None
    with pytest.raises(NotifierUnavailable):
        domain.otp.request_code(PHONE)
    assert "provider said no" not in caplog.text
    # No cool-down: the user did nothing wrong.
    domain.otp.request_code(PHONE)
    [(phone, code)] = notifier.delivered
    assert domain.otp.verify_code(phone, code).created


def test_the_code_never_reaches_the_logs(domain: AuthDomain, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its own loggers at WARNING; open them too, as an operator chasing a bug might.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    domain.otp.request_code(PHONE, "198.51.100.7")
    code = last_code(domain, PHONE)
    with pytest.raises(WrongCode):
        domain.otp.verify_code(PHONE, _wrong(code), "198.51.100.7")
    domain.otp.verify_code(PHONE, code, "198.51.100.7")
    assert {"services.auth.otp", "sqlalchemy.engine.Engine"} <= {record.name for record in caplog.records}
    # Bounded so SQLAlchemy's timings ("cached since 0.001234s") cannot match by chance.
    as_number = re.compile(rf"(?<![\d.]){code}(?!\d)")
    for record in caplog.records:
        assert not as_number.search(record.getMessage())
        assert not as_number.search(repr(vars(record)))


def _limited_domain(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    **limits: object,
) -> AuthDomain:
    return build_auth_domain(
        settings.model_copy(update=limits), engine, keyring, clock=clock, password_hasher=hasher
    )


def test_a_number_gets_a_few_codes_an_hour(domain: AuthDomain, clock: FakeClock) -> None:
    for _ in range(5):
        domain.otp.request_code(PHONE, "198.51.100.7")
        # Refused for the cool-down: it does not use up the hour's allowance.
        with pytest.raises(ResendTooSoon):
            domain.otp.request_code(PHONE, "198.51.100.7")
        clock.advance(61)
    with pytest.raises(TooManyRequests) as refused:
        domain.otp.request_code(PHONE, "198.51.100.8")
    assert 0 < refused.value.retry_after_s <= 3600
    # Another number is not affected.
    domain.otp.request_code("+6281234567891", "198.51.100.7")


def test_one_address_cannot_ask_codes_for_many_numbers(
    settings: AuthSettings, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> None:
    domain = _limited_domain(settings, engine, keyring, clock, hasher, otp_requests_per_address=3)
    for n in range(3):
        domain.otp.request_code(f"+62812345678{n:02d}", "203.0.113.9")
    with pytest.raises(TooManyRequests):
        domain.otp.request_code("+6281234567899", "203.0.113.9")
    domain.otp.request_code("+6281234567899", "203.0.113.10")


def test_one_address_cannot_guess_codes_across_many_numbers(
    settings: AuthSettings, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> None:
    domain = _limited_domain(settings, engine, keyring, clock, hasher, otp_verifies_per_address=4)
    phones = [f"+62812345670{n:02d}" for n in range(5)]
    for phone in phones:
        domain.otp.request_code(phone, f"198.51.100.{len(phone)}")
    for phone in phones[:4]:
        with pytest.raises(WrongCode):
            domain.otp.verify_code(phone, _wrong(last_code(domain, phone)), "203.0.113.9")
    # Even the right code is refused from that address now; the owner elsewhere still gets in.
    with pytest.raises(TooManyRequests):
        domain.otp.verify_code(phones[4], last_code(domain, phones[4]), "203.0.113.9")
    assert domain.otp.verify_code(phones[4], last_code(domain, phones[4]), "198.51.100.20").account


def test_replicas_share_the_allowance_through_redis(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    redis_url: str,
) -> None:
    replicas = [
        _limited_domain(
            settings, engine, keyring, clock, hasher, redis_url=redis_url, otp_codes_per_phone_per_hour=2
        )
        for _ in range(2)
    ]
    phone = f"+62813{secrets.randbelow(10**8):08d}"
    replicas[0].otp.request_code(phone, "198.51.100.7")
    clock.advance(61)
    replicas[1].otp.request_code(phone, "198.51.100.7")
    clock.advance(61)
    for replica in replicas:
        with pytest.raises(TooManyRequests):
            replica.otp.request_code(phone, "198.51.100.7")


def test_codes_in_redis_name_no_number_and_expire_by_themselves(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    clock: FakeClock,
    hasher: PasswordHasher,
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"emeterai-test:otp:{secrets.token_hex(8)}:"
    domain = build_auth_domain(
        settings, engine, keyring, clock=clock, password_hasher=hasher, codes=RedisCodeStore(client, prefix)
    )
    domain.otp.request_code(PHONE)
    [key] = client.keys(prefix + "*")
    assert PHONE.encode() not in key and PHONE.encode() not in b"".join(client.hgetall(key).values())
    # Gone once neither the code (300 s) nor the cool-down after it (60 s) matters.
    assert 0 < client.pttl(key) <= 360_000


def test_without_its_code_store_sign_in_is_unavailable(
    settings: AuthSettings, engine: Engine, keyring: Keyring, clock: FakeClock, hasher: PasswordHasher
) -> None:
    away = RedisCodeStore(
        redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    )
    domain = build_auth_domain(settings, engine, keyring, clock=clock, password_hasher=hasher, codes=away)
    with pytest.raises(Unavailable):
        domain.otp.request_code(PHONE)
    with pytest.raises(Unavailable):
        domain.otp.verify_code(PHONE, "123456")
