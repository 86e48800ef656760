from __future__ import annotations

import pytest

from services.auth.domain import AuthDomain
from services.auth.errors import AccountNotFound
from services.auth.model import Account, AccountKind
from services.common.errors import Conflict, InvalidInput, PreconditionFailed

from .conftest import last_code


def _distributor(domain: AuthDomain) -> Account:
    credential, _ = domain.distributors.create_distributor("PT Contoh Meterai", ["stamps"])
    return domain.accounts.get_account(credential.account_id)


def test_unknown_account(domain: AuthDomain) -> None:
    with pytest.raises(AccountNotFound):
        domain.accounts.get_account("acc_nobody")


def test_sub_account_replays_on_the_same_reference(domain: AuthDomain) -> None:
    parent = _distributor(domain)
    child = domain.accounts.create_sub_account(parent.account_id, "Toko Maju", "cust-17")
    assert child.kind is AccountKind.DISTRIBUTOR_CUSTOMER
    assert (child.parent_account_id, child.external_ref, child.phone) == (parent.account_id, "cust-17", None)
    assert domain.accounts.create_sub_account(parent.account_id, "Toko Maju", "cust-17") == child
    with pytest.raises(Conflict):
        domain.accounts.create_sub_account(parent.account_id, "Toko Lain", "cust-17")


def test_references_are_unique_per_parent_only(domain: AuthDomain) -> None:
    one, two = _distributor(domain), _distributor(domain)
    a = domain.accounts.create_sub_account(one.account_id, "Toko Maju", "cust-1")
    b = domain.accounts.create_sub_account(two.account_id, "Toko Maju", "cust-1")
    assert a.account_id != b.account_id


def test_without_a_reference_every_call_creates(domain: AuthDomain) -> None:
    parent = _distributor(domain)
    a = domain.accounts.create_sub_account(parent.account_id, "Toko Maju", "")
    b = domain.accounts.create_sub_account(parent.account_id, "Toko Maju", "")
    assert a.account_id != b.account_id and a.external_ref is None


def test_only_distributors_and_enterprises_have_sub_accounts(domain: AuthDomain) -> None:
    phone = "+6281311112222"
    domain.otp.request_code(phone)
    retail = domain.otp.verify_code(phone, last_code(domain, phone)).account
    with pytest.raises(PreconditionFailed, match="retail"):
        domain.accounts.create_sub_account(retail.account_id, "Adik", "x")
    with pytest.raises(AccountNotFound):
        domain.accounts.create_sub_account("acc_nobody", "Adik", "x")
    with pytest.raises(InvalidInput, match="display name"):
        domain.accounts.create_sub_account(retail.account_id, "  ", "x")


def test_sub_accounts_page_in_creation_order(domain: AuthDomain) -> None:
    parent = _distributor(domain)
    other = _distributor(domain)
    domain.accounts.create_sub_account(other.account_id, "Bukan", "z")
    made = [domain.accounts.create_sub_account(parent.account_id, f"Toko {i}", f"c{i}") for i in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = domain.accounts.list_sub_accounts(parent.account_id, page_size=2, page_token=token)
        seen += [account.account_id for account in page]
        pages += 1
        if not token:
            break
    assert seen == [account.account_id for account in made]
    assert pages == 3
    for token in ("garbage", "²", "9" * 5000, "\x80"):
        with pytest.raises(InvalidInput):
            domain.accounts.list_sub_accounts(parent.account_id, page_token=token)
