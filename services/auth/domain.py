"""The auth domain assembled from settings, a database and a keyring: one object to hand the servicer.

Kept apart from server.py so tests build exactly what production runs, with their own clock,
notifier and a cheaper password hasher.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from services.auth.accounts import Accounts
from services.auth.codes import CodeStore, code_store
from services.auth.distributors import Distributors
from services.auth.keys import Keyring, load_or_create_secret
from services.auth.model import Clock, utc_now
from services.auth.notices import Notices
from services.auth.notifiers import (
    DevOutboxNotifier,
    FallbackNotifier,
    Notifier,
    SmsNotifier,
    WhatsAppNotifier,
)
from services.auth.operators import Operators
from services.auth.otp import OtpService
from services.auth.pins import PinHasher, StampingPins
from services.auth.tokens import ServiceIdentity, Sessions, TokenIssuer
from services.common.limits import RateLimiter, rate_limiter
from services.common.redis_state import redis_client
from services.common.settings import AuthSettings, SettingsError

# Next to the signing keys, since it is protected the same way.
CODE_KEY_FILE = "otp-code.key"
PIN_KEY_FILE = "stamping-pin.key"


@dataclass(frozen=True)
class AuthDomain:
    settings: AuthSettings
    keyring: Keyring
    issuer: TokenIssuer
    accounts: Accounts
    pins: StampingPins
    sessions: Sessions
    otp: OtpService
    distributors: Distributors
    operators: Operators
    notices: Notices
    service_identity: ServiceIdentity
    # Present only when codes go to the development outbox.
    outbox: DevOutboxNotifier | None


def _notifier(settings: AuthSettings, engine: Engine, clock: Clock) -> Notifier:
    """The channel settings.notifier names: WhatsApp, then SMS when configured; or the dev outbox."""
    if settings.notifier == "whatsapp":
        assert settings.whatsapp_token is not None  # the settings refuse whatsapp without one
        channels: list[Notifier] = [
            WhatsAppNotifier(
                settings.whatsapp_api_url,
                settings.whatsapp_token.get_secret_value(),
                settings.whatsapp_template,
                settings.whatsapp_language,
            )
        ]
        if settings.sms_api_url and settings.sms_token is not None:
            channels.append(SmsNotifier(settings.sms_api_url, settings.sms_token.get_secret_value()))
        return FallbackNotifier(channels)
    if not settings.is_dev:
        # The outbox keeps every code in clear in the database, and nobody would receive them.
        raise SettingsError("EMETERAI_NOTIFIER=dev only works in dev mode; production needs a real channel")
    return DevOutboxNotifier(engine, clock)


def build_auth_domain(
    settings: AuthSettings,
    engine: Engine,
    keyring: Keyring,
    *,
    notifier: Notifier | None = None,
    code_key: bytes | None = None,
    clock: Clock = utc_now,
    password_hasher: PasswordHasher | None = None,
    limiter: RateLimiter | None = None,
    codes: CodeStore | None = None,
) -> AuthDomain:
    """Wire every domain object. Without a notifier, the one `settings.notifier` names is built;
    SettingsError when that one cannot run in this mode."""
    if notifier is None:
        notifier = _notifier(settings, engine, clock)
    if code_key is None:
        code_key = load_or_create_secret(settings.resolved_jwt_key_dir / CODE_KEY_FILE)
    hasher = password_hasher or PasswordHasher()
    issuer = TokenIssuer(keyring, settings, clock)
    accounts = Accounts(engine, clock)
    # One client for everything auth keeps in Redis: limits, codes, signed-out tokens.
    shared = redis_client(settings.redis_url) if settings.redis_url else None
    sessions = Sessions(engine, issuer, settings, clock, shared)
    # Auth's own key, beside its token keys: PINs are an HMAC under it (see pins.py).
    pins = StampingPins(
        engine, PinHasher(load_or_create_secret(settings.resolved_jwt_key_dir / PIN_KEY_FILE), hasher), clock
    )
    return AuthDomain(
        settings=settings,
        keyring=keyring,
        issuer=issuer,
        accounts=accounts,
        pins=pins,
        sessions=sessions,
        otp=OtpService(
            engine,
            settings,
            notifier,
            accounts,
            sessions,
            code_key,
            limiter or rate_limiter(shared),
            codes or code_store(shared, engine),
            pins,
            clock,
        ),
        distributors=Distributors(engine, accounts, issuer, clock, hasher),
        operators=Operators(engine, accounts, sessions),
        notices=Notices(engine, clock),
        service_identity=ServiceIdentity(issuer, settings),
        outbox=notifier if isinstance(notifier, DevOutboxNotifier) else None,
    )
