"""The stamping PIN: six digits a user gives before a stamp is placed, as the national portal asks.

Six digits are a million guesses, so the lock-out carries the security, not the hash: every check
(including the "current PIN" of a change) is compared while it holds the PIN's row, so concurrent
guesses count one after another, and the fifth wrong one locks the PIN until it is reset.

For the same reason a slow password hash protects nothing here: a million argon2 guesses take an
afternoon, while costing ~50 ms of CPU on every stamp. PINs are kept as HMAC-SHA256 under a key
only the auth service holds (PinHasher): a copy of the database alone cannot be searched at all,
and a check costs microseconds. PINs stored as argon2 hashes still verify, and are rewritten
under the key on their next correct use.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.auth.errors import AccountNotFound, PinLocked, WrongPin
from services.auth.model import Clock, PinCheck, utc_now
from services.auth.store import accounts, stamping_pins
from services.common.errors import Conflict, DomainError, InvalidInput, PreconditionFailed

log = logging.getLogger(__name__)

MAX_PIN_ATTEMPTS = 5


def _check_digits(pin: str) -> None:
    if len(pin) != 6 or not pin.isascii() or not pin.isdigit():
        raise InvalidInput("a stamping PIN is exactly 6 digits")


def _check_new_pin(pin: str) -> None:
    _check_digits(pin)
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        raise InvalidInput("the PIN is too easy to guess (repeated or consecutive digits); choose another")


class PinHasher:
    """`hmac-sha256$<hex>` under the auth service's PIN key; argon2 hashes of older PINs verify too."""

    PREFIX = "hmac-sha256$"

    def __init__(self, key: bytes, legacy: PasswordHasher | None = None) -> None:
        if len(key) < 32:
            raise ValueError("the PIN key must be at least 32 bytes")
        self._key = key
        self._legacy = legacy or PasswordHasher()

    def hash(self, pin: str) -> str:
        return self.PREFIX + hmac.new(self._key, pin.encode(), hashlib.sha256).hexdigest()

    def verify(self, pin_hash: str, pin: str) -> bool:
        if pin_hash.startswith(self.PREFIX):
            return hmac.compare_digest(pin_hash, self.hash(pin))
        try:
            return self._legacy.verify(pin_hash, pin)
        except (VerificationError, InvalidHashError):
            return False

    def check_needs_rehash(self, pin_hash: str) -> bool:
        return not pin_hash.startswith(self.PREFIX)


@dataclass
class _PinRow:
    """A PIN's row during a batch of checks, and what the checks changed in it."""

    pin_hash: str
    failed_attempts: int
    changes: dict[str, object] = field(default_factory=dict)


class StampingPins:
    def __init__(self, engine: Engine, hasher: PinHasher, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._hasher = hasher

    def set_stamping_pin(self, account_id: str, pin: str, current_pin: str = "") -> None:
        """Set the PIN; changing an existing one requires `current_pin`, which spends an attempt."""
        _check_new_pin(pin)
        with self._engine.connect() as conn:
            exists = conn.execute(
                select(accounts.c.account_id).where(accounts.c.account_id == account_id)
            ).first()
            has_pin = conn.execute(
                select(stamping_pins.c.account_id).where(stamping_pins.c.account_id == account_id)
            ).first()
        if exists is None:
            raise AccountNotFound(account_id)
        if has_pin is None:
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(stamping_pins).values(
                            account_id=account_id,
                            pin_hash=self._hasher.hash(pin),
                            failed_attempts=0,
                            updated_at=self._clock(),
                        )
                    )
            except IntegrityError:
                raise Conflict("a PIN was set at the same moment; give it as the current PIN") from None
            log.info("stamping PIN set", extra={"account_id": account_id})
            return
        if not current_pin:
            raise InvalidInput("give the current PIN to change it")
        check = self.verify_stamping_pin(account_id, current_pin)
        if not check.valid:
            raise PinLocked() if check.attempts_left == 0 else WrongPin(check.attempts_left)
        new_hash = self._hasher.hash(pin)
        with self._engine.begin() as conn:
            conn.execute(
                update(stamping_pins)
                .where(stamping_pins.c.account_id == account_id)
                .values(pin_hash=new_hash, failed_attempts=0, updated_at=self._clock())
            )
        log.info("stamping PIN changed", extra={"account_id": account_id})

    def check_new_pin(self, pin: str) -> None:
        """InvalidInput unless pin would be accepted as a new PIN."""
        _check_new_pin(pin)

    def reset_stamping_pin(self, account_id: str, pin: str) -> None:
        """Set the PIN whatever it was, and unlock it; the caller has proved it is the owner."""
        _check_new_pin(pin)
        self._require_account(account_id)
        pin_hash = self._hasher.hash(pin)
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(stamping_pins)
                .where(stamping_pins.c.account_id == account_id)
                .values(pin_hash=pin_hash, failed_attempts=0, updated_at=self._clock())
            )
            if changed.rowcount == 0:
                conn.execute(
                    insert(stamping_pins).values(
                        account_id=account_id, pin_hash=pin_hash, failed_attempts=0, updated_at=self._clock()
                    )
                )
        log.info("stamping PIN reset with a one-time code", extra={"account_id": account_id})

    def verify_stamping_pin(self, account_id: str, pin: str) -> PinCheck:
        """Whether `pin` is right, and how many tries are left before the PIN locks."""
        (outcome,) = self.verify_stamping_pins([(account_id, pin)])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def verify_stamping_pins(self, checks: Sequence[tuple[str, str]]) -> list[PinCheck | DomainError]:
        """verify_stamping_pin for each (account_id, pin), in one transaction: each outcome is the
        check's PinCheck or the DomainError it would have raised alone. Checks of one account are
        compared in the order given, each against the count the one before it left, exactly as
        the same checks sent one after another."""
        outcomes: list[PinCheck | DomainError | None] = [None] * len(checks)
        to_compare: list[int] = []
        for index, (_, pin) in enumerate(checks):
            try:
                _check_digits(pin)
            except InvalidInput as bad:
                outcomes[index] = bad
            else:
                to_compare.append(index)
        account_ids = {checks[index][0] for index in to_compare}
        if account_ids:
            self._compare_locked(checks, to_compare, account_ids, outcomes)
        # The rest have no PIN: say whether the account is there at all.
        unknown = self._unknown_accounts(
            {checks[i][0] for i, outcome in enumerate(outcomes) if outcome is None}
        )
        answered: list[PinCheck | DomainError] = []
        for (account_id, _), outcome in zip(checks, outcomes, strict=True):
            if outcome is None:
                outcome = (
                    AccountNotFound(account_id)
                    if account_id in unknown
                    else PreconditionFailed("no stamping PIN is set for this account; set one first")
                )
            answered.append(outcome)
        return answered

    def _compare_locked(
        self,
        checks: Sequence[tuple[str, str]],
        to_compare: list[int],
        account_ids: set[str],
        outcomes: list[PinCheck | DomainError | None],
    ) -> None:
        """The checks at `to_compare` against their PINs' rows, in one transaction holding them
        (SQLite: the write lock BEGIN IMMEDIATE takes; PostgreSQL: FOR UPDATE, taken in account
        order so two batches never wait on each other in a circle): concurrent guesses are compared
        one at a time, so none can outrun the counter. A right PIN with no wrong tries before it
        writes nothing, which is every stamp of a user who knows their PIN. Checks of accounts
        without a PIN are left None."""
        with self._engine.begin() as conn:
            found = conn.execute(
                select(stamping_pins.c.account_id, stamping_pins.c.pin_hash, stamping_pins.c.failed_attempts)
                .where(stamping_pins.c.account_id.in_(account_ids))
                .order_by(stamping_pins.c.account_id)
                .with_for_update()
            )
            rows = {row.account_id: _PinRow(row.pin_hash, row.failed_attempts) for row in found}
            for index in to_compare:
                account_id, pin = checks[index]
                row = rows.get(account_id)
                if row is not None:
                    outcomes[index] = self._compare(account_id, row, pin)
            for account_id, row in rows.items():
                if row.changes:
                    conn.execute(
                        update(stamping_pins)
                        .where(stamping_pins.c.account_id == account_id)
                        .values(**row.changes)
                    )

    def _compare(self, account_id: str, row: _PinRow, pin: str) -> PinCheck:
        """One check against the row as the checks before it left it; what it changes is noted in
        row.changes, written once for the whole batch."""
        if row.failed_attempts >= MAX_PIN_ATTEMPTS:
            return PinCheck(valid=False, attempts_left=0)
        if not self._hasher.verify(row.pin_hash, pin):
            row.failed_attempts += 1
            row.changes["failed_attempts"] = row.failed_attempts
            left = MAX_PIN_ATTEMPTS - row.failed_attempts
            if left == 0:
                log.warning("stamping PIN locked after wrong tries", extra={"account_id": account_id})
            return PinCheck(valid=False, attempts_left=left)
        if row.failed_attempts:
            row.failed_attempts = 0
            row.changes["failed_attempts"] = 0
        if self._hasher.check_needs_rehash(row.pin_hash):
            row.pin_hash = self._hasher.hash(pin)
            row.changes["pin_hash"] = row.pin_hash
        return PinCheck(valid=True, attempts_left=MAX_PIN_ATTEMPTS)

    def _unknown_accounts(self, account_ids: set[str]) -> set[str]:
        if not account_ids:
            return set()
        with self._engine.connect() as conn:
            known = conn.execute(select(accounts.c.account_id).where(accounts.c.account_id.in_(account_ids)))
            return account_ids - {row.account_id for row in known}

    def _require_account(self, account_id: str) -> None:
        if self._unknown_accounts({account_id}):
            raise AccountNotFound(account_id)
