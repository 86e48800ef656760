from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from services.auth.domain import AuthDomain
from services.auth.errors import AccountNotFound, NoPendingCode, PinLocked, WrongCode, WrongPin
from services.auth.model import PinCheck
from services.auth.pins import PinHasher
from services.auth.store import stamping_pins
from services.common.errors import DomainError, InvalidInput, PreconditionFailed
from tests.conftest import FakeClock

from .conftest import last_code

PIN = "482913"


@pytest.fixture
def account_id(domain: AuthDomain) -> str:
    phone = "+6285700001111"
    domain.otp.request_code(phone)
    return domain.otp.verify_code(phone, last_code(domain, phone)).account.account_id


def test_set_then_verify(domain: AuthDomain, account_id: str) -> None:
    assert not domain.accounts.get_account(account_id).stamping_pin_set
    domain.pins.set_stamping_pin(account_id, PIN)
    assert domain.accounts.get_account(account_id).stamping_pin_set
    assert domain.pins.verify_stamping_pin(account_id, PIN) == PinCheck(True, 5)


def test_wrong_pins_count_down_and_a_right_one_resets(domain: AuthDomain, account_id: str) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    assert domain.pins.verify_stamping_pin(account_id, "111112") == PinCheck(False, 4)
    assert domain.pins.verify_stamping_pin(account_id, "111113") == PinCheck(False, 3)
    assert domain.pins.verify_stamping_pin(account_id, PIN) == PinCheck(True, 5)
    assert domain.pins.verify_stamping_pin(account_id, "111112") == PinCheck(False, 4)


def test_five_wrong_pins_lock_it(domain: AuthDomain, account_id: str) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    results = [domain.pins.verify_stamping_pin(account_id, "111112") for _ in range(5)]
    assert [r.attempts_left for r in results] == [4, 3, 2, 1, 0]
    assert domain.pins.verify_stamping_pin(account_id, PIN) == PinCheck(False, 0)
    with pytest.raises(PinLocked):
        domain.pins.set_stamping_pin(account_id, "739164", current_pin=PIN)


def test_changing_needs_the_current_pin(domain: AuthDomain, account_id: str) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    with pytest.raises(InvalidInput, match="current PIN"):
        domain.pins.set_stamping_pin(account_id, "739164")
    with pytest.raises(WrongPin) as wrong:
        domain.pins.set_stamping_pin(account_id, "739164", current_pin="111112")
    assert wrong.value.attempts_left == 4
    domain.pins.set_stamping_pin(account_id, "739164", current_pin=PIN)
    assert domain.pins.verify_stamping_pin(account_id, "739164").valid
    assert not domain.pins.verify_stamping_pin(account_id, PIN).valid


@pytest.mark.parametrize("pin", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "000000", "123456", "987654"])
def test_pin_shape(domain: AuthDomain, account_id: str, pin: str) -> None:
    with pytest.raises(InvalidInput):
        domain.pins.set_stamping_pin(account_id, pin)


def test_pin_needs_an_account_and_a_pin(domain: AuthDomain, account_id: str) -> None:
    with pytest.raises(AccountNotFound):
        domain.pins.set_stamping_pin("acc_nobody", PIN)
    with pytest.raises(AccountNotFound):
        domain.pins.verify_stamping_pin("acc_nobody", PIN)
    with pytest.raises(PreconditionFailed, match="set one first"):
        domain.pins.verify_stamping_pin(account_id, PIN)


def test_pin_is_stored_as_a_keyed_hash(domain: AuthDomain, engine: Engine, account_id: str) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    with engine.connect() as conn:
        stored = conn.execute(select(stamping_pins.c.pin_hash)).scalar_one()
    assert stored.startswith(PinHasher.PREFIX) and PIN not in stored
    # Without the auth service's key the hash says nothing: the same PIN under another key differs.
    assert stored != PinHasher(b"k" * 32).hash(PIN)
    assert PinHasher(b"k" * 32).hash(PIN) == PinHasher(b"k" * 32).hash(PIN)


def test_an_argon2_pin_still_verifies_and_is_rewritten_under_the_key(
    domain: AuthDomain, engine: Engine, account_id: str
) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    legacy = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PIN)
    with engine.begin() as conn:
        conn.execute(update(stamping_pins).values(pin_hash=legacy))
    assert domain.pins.verify_stamping_pin(account_id, "000000") == PinCheck(False, 4)
    with engine.connect() as conn:
        assert conn.execute(select(stamping_pins.c.pin_hash)).scalar_one() == legacy
    assert domain.pins.verify_stamping_pin(account_id, PIN) == PinCheck(True, 5)
    with engine.connect() as conn:
        assert conn.execute(select(stamping_pins.c.pin_hash)).scalar_one().startswith(PinHasher.PREFIX)
    assert domain.pins.verify_stamping_pin(account_id, PIN) == PinCheck(True, 5)


def test_a_locked_pin_is_reset_with_a_fresh_code_sent_to_the_phone(
    domain: AuthDomain, clock: FakeClock
) -> None:
    phone = "+6281299990000"
    domain.otp.request_code(phone)
    account = domain.otp.verify_code(phone, last_code(domain, phone)).account
    domain.pins.set_stamping_pin(account.account_id, "482915")
    for _ in range(5):
        domain.pins.verify_stamping_pin(account.account_id, "000000")
    assert domain.pins.verify_stamping_pin(account.account_id, "482915") == (False, 0)
    clock.advance(61)
    domain.otp.request_code(phone)
    code = last_code(domain, phone)
    # A PIN that would be refused does not spend the code; a wrong code does not reset anything.
    with pytest.raises(InvalidInput):
        domain.otp.reset_pin(account.account_id, code, "111111")
    with pytest.raises(WrongCode):
        domain.otp.reset_pin(account.account_id, f"{(int(code) + 1) % 1_000_000:06d}", "739104")
    domain.otp.reset_pin(account.account_id, code, "739104")
    assert domain.pins.verify_stamping_pin(account.account_id, "739104").valid
    # The code is spent: it cannot reset the PIN, or sign in, a second time.
    with pytest.raises(NoPendingCode):
        domain.otp.reset_pin(account.account_id, code, "739105")


def _signed_in(domain: AuthDomain, phone: str) -> str:
    domain.otp.request_code(phone)
    return domain.otp.verify_code(phone, last_code(domain, phone)).account.account_id


def _counted(engine: Engine, account_id: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            select(stamping_pins.c.failed_attempts).where(stamping_pins.c.account_id == account_id)
        ).scalar_one_or_none()


def _hash_of(engine: Engine, account_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            select(stamping_pins.c.pin_hash).where(stamping_pins.c.account_id == account_id)
        ).scalar_one()


class LockOut:
    """The PIN rules written out plainly, one check after another: what every check must answer."""

    def __init__(self) -> None:
        self.failed = {"first": 0, "second": 0, "legacy": 0}
        self.rehashed = False

    def check(self, who: str, pin: str) -> tuple[object, ...]:
        if len(pin) != 6 or not pin.isdigit():
            return ("InvalidInput", "a stamping PIN is exactly 6 digits")
        if who == "nobody":
            return ("AccountNotFound",)
        if who == "no-pin":
            return ("PreconditionFailed", "no stamping PIN is set for this account; set one first")
        if self.failed[who] >= 5:
            return ("check", False, 0)
        if pin != PIN:
            self.failed[who] += 1
            return ("check", False, 5 - self.failed[who])
        self.failed[who] = 0
        self.rehashed |= who == "legacy"
        return ("check", True, 5)


def _answer(outcome: PinCheck | DomainError) -> tuple[object, ...]:
    if isinstance(outcome, AccountNotFound):
        return ("AccountNotFound",)
    if isinstance(outcome, DomainError):
        return (type(outcome).__name__, outcome.message)
    return ("check", outcome.valid, outcome.attempts_left)


# Who a check is for: two accounts with a PIN, one whose PIN is still an argon2 hash from before
# the keyed hash, one without a PIN, one that does not exist; and what it gives: the right PIN, a
# wrong one, or something that is not a PIN at all.
CHECKS = st.lists(
    st.tuples(
        st.sampled_from(["first", "second", "legacy", "no-pin", "nobody"]),
        st.sampled_from([PIN, "111112", "12ab"]),
    ),
    max_size=14,
)


def test_checks_answer_by_the_lock_out_rules_in_one_batch_and_one_by_one(
    domain: AuthDomain, engine: Engine
) -> None:
    """A batch counts its wrong guesses at an account one after another, as separate checks do:
    a batch is no way around the lock-out, and no right PIN in it is answered differently."""
    people = ["first", "second", "legacy", "no-pin"]
    lanes = {
        lane: {who: _signed_in(domain, f"+628570002{lane_n}{n}0") for n, who in enumerate(people)}
        | {"nobody": "acc_nobody"}
        for lane_n, lane in enumerate(["batched", "alone"])
    }
    legacy = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PIN)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(checks=CHECKS)
    def by_the_rules(checks: list[tuple[str, str]]) -> None:
        for accounts in lanes.values():
            # Every example starts from fresh, unlocked PINs.
            for who in ("first", "second", "legacy"):
                domain.pins.reset_stamping_pin(accounts[who], PIN)
            with engine.begin() as conn:
                row = stamping_pins.c.account_id == accounts["legacy"]
                conn.execute(update(stamping_pins).where(row).values(pin_hash=legacy))
        rules = LockOut()
        expected = [rules.check(who, pin) for who, pin in checks]
        batched = domain.pins.verify_stamping_pins([(lanes["batched"][who], pin) for who, pin in checks])
        alone: list[PinCheck | DomainError] = []
        for who, pin in checks:
            try:
                alone.append(domain.pins.verify_stamping_pin(lanes["alone"][who], pin))
            except DomainError as refused:
                alone.append(refused)
        assert [_answer(o) for o in batched] == expected
        assert [_answer(o) for o in alone] == expected
        for accounts in lanes.values():
            assert {who: _counted(engine, accounts[who]) for who in rules.failed} == rules.failed
            assert _counted(engine, accounts["no-pin"]) is None
            # A right legacy PIN is rewritten under the key, on its first correct use.
            assert _hash_of(engine, accounts["legacy"]).startswith(PinHasher.PREFIX) == rules.rehashed

    by_the_rules()


def test_a_batch_locks_the_pin_at_the_fifth_wrong_guess_and_refuses_the_right_one_after(
    domain: AuthDomain, account_id: str
) -> None:
    domain.pins.set_stamping_pin(account_id, PIN)
    outcomes = domain.pins.verify_stamping_pins([(account_id, "111112")] * 6 + [(account_id, PIN)])
    assert outcomes == [PinCheck(False, n) for n in (4, 3, 2, 1, 0, 0)] + [PinCheck(False, 0)]
    assert domain.pins.verify_stamping_pins([]) == []
