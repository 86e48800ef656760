"""Limits must hold when guesses arrive at once, not only one after another."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from services.auth.domain import AuthDomain
from services.auth.errors import RefreshTokenReused, TooManyAttempts, WrongCode
from services.auth.model import PinCheck

from .conftest import last_code

T = TypeVar("T")
PHONE = "+6281377778888"
CALLERS = 10


def _all_at_once(call: Callable[[], T]) -> list[T | Exception]:
    def attempt() -> T | Exception:
        try:
            return call()
        except Exception as exc:  # collected and asserted on below
            return exc

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(lambda _: attempt(), range(CALLERS)))


def test_concurrent_wrong_codes_get_five_tries_in_total(domain: AuthDomain) -> None:
    domain.otp.request_code(PHONE)
    code = last_code(domain, PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    results = _all_at_once(lambda: domain.otp.verify_code(PHONE, wrong))
    assert sorted(r.attempts_left for r in results if isinstance(r, WrongCode)) == [1, 2, 3, 4]
    assert sum(isinstance(r, TooManyAttempts) for r in results) == CALLERS - 4
    assert isinstance(_all_at_once(lambda: domain.otp.verify_code(PHONE, code))[0], TooManyAttempts)


def test_concurrent_wrong_pins_get_five_tries_in_total(domain: AuthDomain) -> None:
    domain.otp.request_code(PHONE)
    account_id = domain.otp.verify_code(PHONE, last_code(domain, PHONE)).account.account_id
    domain.pins.set_stamping_pin(account_id, "482913")
    results = _all_at_once(lambda: domain.pins.verify_stamping_pin(account_id, "111112"))
    assert sorted(results, key=lambda r: -r.attempts_left) == [  # type: ignore[union-attr]
        PinCheck(False, left) for left in [4, 3, 2, 1] + [0] * (CALLERS - 4)
    ]


def test_concurrent_refreshes_of_one_token_let_at_most_one_through(domain: AuthDomain) -> None:
    domain.otp.request_code(PHONE)
    tokens = domain.otp.verify_code(PHONE, last_code(domain, PHONE)).tokens
    results = _all_at_once(lambda: domain.sessions.refresh(tokens.refresh_token))
    assert sum(not isinstance(r, Exception) for r in results) <= 1
    assert any(isinstance(r, RefreshTokenReused) for r in results)


def test_concurrent_batches_over_the_same_accounts_count_every_guess_and_never_deadlock(
    domain: AuthDomain,
) -> None:
    """Batches naming the same accounts in opposite orders, all at once: each takes the rows in one
    order (account order), so none waits on another in a circle, and every wrong guess counts."""
    accounts = []
    for n in range(3):
        phone = f"+62813777790{n}0"
        domain.otp.request_code(phone)
        account_id = domain.otp.verify_code(phone, last_code(domain, phone)).account.account_id
        domain.pins.set_stamping_pin(account_id, "482913")
        accounts.append(account_id)
    calls = iter(range(CALLERS))

    def one_batch() -> dict[str, int]:
        ordered = accounts if next(calls) % 2 else accounts[::-1]
        outcomes = domain.pins.verify_stamping_pins([(a, "111112") for a in ordered])
        assert all(isinstance(o, PinCheck) and not o.valid for o in outcomes), outcomes
        return {a: o.attempts_left for a, o in zip(ordered, outcomes, strict=True)}  # type: ignore[union-attr]

    results = _all_at_once(one_batch)
    assert not [r for r in results if isinstance(r, Exception)], results
    for account_id in accounts:
        # Ten guesses at each account: five counted down to the lock, five refused as locked.
        left = sorted((batch[account_id] for batch in results), reverse=True)  # type: ignore[index]
        assert left == [4, 3, 2, 1, 0] + [0] * (CALLERS - 5), (account_id, left)
