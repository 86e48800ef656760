"""Where pending sign-in codes are kept: in Redis in production, in the auth database by default.

A code is kept only as an HMAC (see otp.py), one per phone number, with its tries. Every change
that decides something is atomic in either store: a new code replaces the old one only when the
resend cool-down has passed; a try is spent before it is compared, so concurrent guesses cannot
outrun the count; a code is spent by exactly one sign-in.

In Redis a number's code is one hash (the key is the number's SHA-256, so no number is stored),
changed by Lua scripts, and it disappears by itself once neither the code nor the cool-down
matters. When Redis cannot be reached, sign-in is UNAVAILABLE: no code can be checked.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import redis
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.auth.errors import CodeExpired, NoPendingCode, TooManyAttempts
from services.auth.store import otp_challenges
from services.common.errors import Unavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Challenge:
    salt: str
    code_hash: str
    created_at: datetime
    expires_at: datetime


class CodeStore(Protocol):
    def resend_wait(self, phone: str, now: datetime, resend_after_s: int) -> int:
        """Seconds before another code may go to phone (0: now)."""
        ...

    def put(self, phone: str, challenge: Challenge, resend_after_s: int) -> int:
        """Replace phone's code with challenge unless one went out within resend_after_s of its
        creation; 0 when stored, else the seconds to wait."""
        ...

    def withdraw(self, phone: str, code_hash: str) -> None:
        """Remove phone's code if it is still this one (its delivery failed)."""
        ...

    def spend_try(self, phone: str, now: datetime, max_tries: int) -> tuple[Challenge, int]:
        """Count one try at phone's code; (the code, tries used so far). NoPendingCode, CodeExpired
        or TooManyAttempts when there is nothing to try."""
        ...

    def spend_code(self, phone: str, code_hash: str, now: datetime) -> bool:
        """Mark the code used; True for the one caller that did."""
        ...


def _wait(created_at: datetime, now: datetime, resend_after_s: int) -> int:
    return max(0, math.ceil(resend_after_s - (now - created_at).total_seconds()))


class DatabaseCodeStore:
    """The single-node default: a row per number in the auth database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def resend_wait(self, phone: str, now: datetime, resend_after_s: int) -> int:
        with self._engine.connect() as conn:
            created = conn.execute(
                select(otp_challenges.c.created_at).where(otp_challenges.c.phone == phone)
            ).scalar_one_or_none()
        return 0 if created is None else _wait(created, now, resend_after_s)

    def put(self, phone: str, challenge: Challenge, resend_after_s: int) -> int:
        try:
            with self._engine.begin() as conn:
                created = conn.execute(
                    select(otp_challenges.c.created_at)
                    .where(otp_challenges.c.phone == phone)
                    .with_for_update()
                ).scalar_one_or_none()
                if created is not None and (wait := _wait(created, challenge.created_at, resend_after_s)):
                    return wait
                conn.execute(delete(otp_challenges).where(otp_challenges.c.phone == phone))
                conn.execute(
                    insert(otp_challenges).values(
                        phone=phone,
                        salt=challenge.salt,
                        code_hash=challenge.code_hash,
                        created_at=challenge.created_at,
                        expires_at=challenge.expires_at,
                        failed_attempts=0,
                    )
                )
        except IntegrityError:
            # Another request for the number committed first: it is the recent one.
            return max(resend_after_s, 1)
        return 0

    def withdraw(self, phone: str, code_hash: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                delete(otp_challenges).where(
                    otp_challenges.c.phone == phone, otp_challenges.c.code_hash == code_hash
                )
            )

    def spend_try(self, phone: str, now: datetime, max_tries: int) -> tuple[Challenge, int]:
        with self._engine.begin() as conn:
            row = conn.execute(select(otp_challenges).where(otp_challenges.c.phone == phone)).one_or_none()
            if row is None or row.consumed_at is not None:
                raise NoPendingCode()
            if row.expires_at <= now:
                raise CodeExpired()
            same = (otp_challenges.c.phone == phone, otp_challenges.c.code_hash == row.code_hash)
            # Concurrent tries queue on this row's lock, so no more than max_tries are counted.
            spent = conn.execute(
                update(otp_challenges)
                .where(
                    *same,
                    otp_challenges.c.consumed_at.is_(None),
                    otp_challenges.c.failed_attempts < max_tries,
                )
                .values(failed_attempts=otp_challenges.c.failed_attempts + 1)
                .returning(otp_challenges.c.failed_attempts)
            ).scalar_one_or_none()
            if spent is None:
                # Locked, or a concurrent call spent or replaced the code since it was read.
                pending = conn.execute(select(otp_challenges.c.consumed_at).where(*same)).one_or_none()
                raise (
                    TooManyAttempts()
                    if pending is not None and pending.consumed_at is None
                    else NoPendingCode()
                )
        return Challenge(row.salt, row.code_hash, row.created_at, row.expires_at), spent

    def spend_code(self, phone: str, code_hash: str, now: datetime) -> bool:
        with self._engine.begin() as conn:
            spent = conn.execute(
                update(otp_challenges)
                .where(
                    otp_challenges.c.phone == phone,
                    otp_challenges.c.code_hash == code_hash,
                    otp_challenges.c.consumed_at.is_(None),
                )
                .values(consumed_at=now)
            )
        return spent.rowcount == 1


# Times are Unix milliseconds of the service's clock; Redis's own expiry only clears keys away.
_PUT = """
local created = redis.call('HGET', KEYS[1], 'created')
if created then
    local wait = tonumber(created) + tonumber(ARGV[2]) - tonumber(ARGV[1])
    if wait > 0 then return wait end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'salt', ARGV[3], 'hash', ARGV[4], 'expires', ARGV[5],
           'tries', 0, 'spent', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 0
"""
_WITHDRAW = """
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
# {tries used, salt, hash, created, expires}, or {-1} nothing pending, {-2} expired, {-3} locked.
_SPEND_TRY = """
local code = redis.call('HMGET', KEYS[1], 'salt', 'hash', 'created', 'expires', 'tries', 'spent')
if not code[1] or code[6] == '1' then return {-1} end
if tonumber(code[4]) <= tonumber(ARGV[1]) then return {-2} end
if tonumber(code[5]) >= tonumber(ARGV[2]) then return {-3} end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
return {tries, code[1], code[2], code[3], code[4]}
"""
_SPEND_CODE = """
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] and redis.call('HGET', KEYS[1], 'spent') == '0' then
    redis.call('HSET', KEYS[1], 'spent', 1)
    return 1
end
return 0
"""
_NO_TRY = {-1: NoPendingCode, -2: CodeExpired, -3: TooManyAttempts}


def _unreachable() -> Unavailable:
    return Unavailable("sign-in codes cannot be checked right now; try again shortly")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: bytes | str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


class RedisCodeStore:
    """Codes in Redis, shared by every auth replica."""

    def __init__(self, client: redis.Redis, prefix: str = "emeterai:otp:") -> None:
        self._client = client
        self._prefix = prefix
        self._put = client.register_script(_PUT)
        self._withdraw = client.register_script(_WITHDRAW)
        self._spend_try = client.register_script(_SPEND_TRY)
        self._spend_code = client.register_script(_SPEND_CODE)

    def _key(self, phone: str) -> str:
        return self._prefix + hashlib.sha256(phone.encode()).hexdigest()

    def _call(self, script: Callable[..., T], phone: str, *args: Any) -> T:
        try:
            return script(keys=[self._key(phone)], args=list(args))
        except redis.RedisError:
            raise _unreachable() from None

    def resend_wait(self, phone: str, now: datetime, resend_after_s: int) -> int:
        try:
            created = self._client.hget(self._key(phone), "created")
        except redis.RedisError:
            raise _unreachable() from None
        return 0 if created is None else _wait(_moment(created), now, resend_after_s)

    def put(self, phone: str, challenge: Challenge, resend_after_s: int) -> int:
        lifetime = challenge.expires_at - challenge.created_at + timedelta(seconds=resend_after_s)
        wait_ms = self._call(
            self._put,
            phone,
            _ms(challenge.created_at),
            resend_after_s * 1000,
            challenge.salt,
            challenge.code_hash,
            _ms(challenge.expires_at),
            int(lifetime.total_seconds() * 1000),
        )
        return math.ceil(int(wait_ms) / 1000)

    def withdraw(self, phone: str, code_hash: str) -> None:
        self._call(self._withdraw, phone, code_hash)

    def spend_try(self, phone: str, now: datetime, max_tries: int) -> tuple[Challenge, int]:
        answer = self._call(self._spend_try, phone, _ms(now), max_tries)
        tries = int(answer[0])
        if tries < 0:
            raise _NO_TRY[tries]()
        salt, code_hash, created, expires = (value.decode() for value in answer[1:])
        return Challenge(salt, code_hash, _moment(created), _moment(expires)), tries

    def spend_code(self, phone: str, code_hash: str, now: datetime) -> bool:
        return bool(self._call(self._spend_code, phone, code_hash))


def code_store(client: redis.Redis | None, engine: Engine) -> CodeStore:
    """Redis given a client (production, several replicas), else the auth database."""
    return DatabaseCodeStore(engine) if client is None else RedisCodeStore(client)
