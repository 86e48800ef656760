"""Phone sign-in with a one-time code.

A code is six digits from `secrets`, kept only as an HMAC under a server key (a stolen database
alone does not reveal pending codes, which a plain hash of a million possibilities would), valid
for a few minutes, good for one sign-in, and locked after a few wrong tries. The code is never
logged; only the message handed to the notifier carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from sqlalchemy.engine import Engine

from services.auth.accounts import Accounts
from services.auth.codes import Challenge, CodeStore
from services.auth.errors import (
    NoPendingCode,
    NotifierUnavailable,
    ResendTooSoon,
    TooManyAttempts,
    TooManyRequests,
    WrongCode,
)
from services.auth.model import Account, AccountKind, Clock, CodeSent, SignIn, TokenKind, utc_now
from services.auth.notifiers import Notifier
from services.auth.phones import mask_phone, normalise_phone
from services.auth.pins import StampingPins
from services.auth.tokens import Sessions
from services.common.errors import InvalidInput, PreconditionFailed
from services.common.limits import RateLimiter
from services.common.settings import AuthSettings

log = logging.getLogger(__name__)

CODE_DIGITS = 6

# Accounts that sign in by phone, and the token kind each gets.
_PHONE_TOKEN_KINDS = {AccountKind.RETAIL: TokenKind.RETAIL, AccountKind.OPERATOR: TokenKind.OPERATOR}


def _token_kind(account: Account) -> TokenKind:
    kind = _PHONE_TOKEN_KINDS.get(account.kind)
    if kind is None:
        raise PreconditionFailed("this account cannot sign in with a phone code")
    return kind


class OtpService:
    def __init__(
        self,
        engine: Engine,
        settings: AuthSettings,
        notifier: Notifier,
        accounts: Accounts,
        sessions: Sessions,
        code_key: bytes,
        limiter: RateLimiter,
        codes: CodeStore,
        pins: StampingPins,
        clock: Clock = utc_now,
    ) -> None:
        if len(code_key) < 16:
            raise ValueError("the code key must be at least 16 bytes")
        self._engine = engine
        self._settings = settings
        self._notifier = notifier
        self._accounts = accounts
        self._sessions = sessions
        self._code_key = code_key
        self._limiter = limiter
        self._codes = codes
        self._pins = pins
        self._clock = clock

    def _limit(self, name: str, key: str, limit: int, window_s: int) -> None:
        wait = self._limiter.hit(name, key, limit, window_s)
        if wait:
            log.info("request limit reached", extra={"limit": name})
            raise TooManyRequests(wait)

    def request_code(self, phone: str, client_address: str = "") -> CodeSent:
        """Send a fresh code to `phone`, replacing any pending one, unless one went out too recently."""
        e164 = normalise_phone(phone)
        if client_address:
            self._limit("otp-request-address", client_address, self._settings.otp_requests_per_address, 600)
        ttl = self._settings.otp_ttl_s
        resend_after = self._settings.otp_resend_after_s
        now = self._clock()
        if wait := self._codes.resend_wait(e164, now, resend_after):
            raise ResendTooSoon(wait)
        # Counted only for a code that will go out: a request refused for the cool-down does not
        # use up the number's hourly allowance.
        self._limit("otp-phone", e164, self._settings.otp_codes_per_phone_per_hour, 3600)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        salt = secrets.token_hex(16)
        challenge = Challenge(salt, self._hash(salt, e164, code), now, now + timedelta(seconds=ttl))
        if wait := self._codes.put(e164, challenge, resend_after):
            # Another request for the number stored its code in between.
            raise ResendTooSoon(wait)
        try:
            self._notifier.send_code(e164, code, ttl)
        except Exception as exc:
            # Withdraw the code so the cool-down does not punish the user for our failure.
            self._codes.withdraw(e164, challenge.code_hash)
            # Only the type: an adapter's exception text might quote the message, code included.
            log.warning(
                "code delivery failed",
                extra={"phone": mask_phone(e164), "error_type": type(exc).__name__},
            )
            raise NotifierUnavailable() from None
        log.info(
            "code sent",
            extra={"phone": mask_phone(e164), "client_address": client_address, "expires_in_s": ttl},
        )
        return CodeSent(phone=e164, expires_in_s=ttl, resend_after_s=resend_after)

    def verify_code(self, phone: str, code: str, client_address: str = "") -> SignIn:
        """Check `code`; on success spend it, create the account if new, and open a session."""
        e164 = normalise_phone(phone)
        self._spend(e164, code, client_address)
        with self._engine.begin() as conn:
            account, created = self._accounts.get_or_create_retail(conn, e164)
            tokens = self._sessions.open(conn, account.account_id, _token_kind(account))
        log.info("signed in with code", extra={"account_id": account.account_id, "account_created": created})
        return SignIn(tokens=tokens, account=account, created=created)

    def reset_pin(self, account_id: str, code: str, pin: str, client_address: str = "") -> None:
        """A new stamping PIN for an account that lost its own, proved by a fresh code sent to its
        phone."""
        self._pins.check_new_pin(pin)  # before the code is spent on a PIN that would be refused
        account = self._accounts.get_account(account_id)
        if not account.phone:
            raise PreconditionFailed("only an account that signs in by phone can reset its PIN this way")
        self._spend(account.phone, code, client_address)
        self._pins.reset_stamping_pin(account_id, pin)

    def _spend(self, e164: str, code: str, client_address: str) -> None:
        """Check code against the number's pending one and spend it; raise when it is not right."""
        code = code.strip()
        if len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit():
            raise InvalidInput(f"the code is the {CODE_DIGITS} digits sent to your phone")
        if client_address:
            # Guesses spread over many numbers from one address: each number's own tries are
            # counted on its code.
            self._limit("otp-verify-address", client_address, self._settings.otp_verifies_per_address, 600)
        max_attempts = self._settings.otp_max_attempts
        now = self._clock()
        # The try is spent before the code is compared: concurrent guesses cannot outrun the count.
        challenge, tries = self._codes.spend_try(e164, now, max_attempts)
        if not hmac.compare_digest(self._hash(challenge.salt, e164, code), challenge.code_hash):
            left = max_attempts - tries
            failure = TooManyAttempts() if left <= 0 else WrongCode(left)
            log.info(
                "wrong code",
                extra={
                    "phone": mask_phone(e164),
                    "client_address": client_address,
                    "error": type(failure).__name__,
                },
            )
            raise failure
        if not self._codes.spend_code(e164, challenge.code_hash, now):
            # A concurrent call with the same code got there first.
            raise NoPendingCode()

    def _hash(self, salt: str, phone: str, code: str) -> str:
        message = f"{salt}:{phone}:{code}".encode("ascii")
        return hmac.new(self._code_key, message, hashlib.sha256).hexdigest()
