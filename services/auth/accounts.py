"""Accounts: retail accounts made on first phone sign-in, distributor accounts, and sub-accounts."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.auth.errors import AccountNotFound
from services.auth.model import Account, AccountKind, Clock, utc_now
from services.auth.store import accounts, stamping_pins
from services.common import paging
from services.common.errors import Conflict, InvalidInput, PreconditionFailed

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_MAX_NAME = 200

# Which kind a sub-account gets, by the kind of its parent; other kinds cannot have children.
_CHILD_KIND = {
    AccountKind.DISTRIBUTOR: AccountKind.DISTRIBUTOR_CUSTOMER,
    AccountKind.ENTERPRISE: AccountKind.ENTERPRISE_CHILD,
}


def new_account_id() -> str:
    return "acc_" + secrets.token_hex(12)


def clean_text(value: str, what: str, max_length: int = _MAX_NAME) -> str:
    """value without surrounding space; InvalidInput naming `what` when empty or too long."""
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} is required")
    if len(value) > max_length:
        raise InvalidInput(f"{what} is at most {max_length} characters")
    return value


def account_query() -> Select[Any]:
    return select(accounts, stamping_pins.c.account_id.is_not(None).label("pin_set")).outerjoin(
        stamping_pins, stamping_pins.c.account_id == accounts.c.account_id
    )


def to_account(row: Any) -> Account:
    return Account(
        account_id=row.account_id,
        kind=AccountKind(row.kind),
        phone=row.phone,
        display_name=row.display_name,
        parent_account_id=row.parent_account_id,
        external_ref=row.external_ref,
        created_at=row.created_at,
        stamping_pin_set=bool(row.pin_set),
    )


class Accounts:
    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock

    def get_account(self, account_id: str) -> Account:
        with self._engine.connect() as conn:
            return self.find(conn, account_id)

    def find(self, conn: Connection, account_id: str) -> Account:
        row = conn.execute(account_query().where(accounts.c.account_id == account_id)).one_or_none()
        if row is None:
            raise AccountNotFound(account_id)
        return to_account(row)

    def get_or_create_retail(self, conn: Connection, phone: str) -> tuple[Account, bool]:
        """The account signed in by `phone` (E.164), created if new; True when it was created."""
        row = conn.execute(account_query().where(accounts.c.phone == phone)).one_or_none()
        if row is not None:
            return to_account(row), False
        account_id = new_account_id()
        conn.execute(
            insert(accounts).values(
                account_id=account_id,
                kind=AccountKind.RETAIL.value,
                phone=phone,
                display_name="",
                created_at=self._clock(),
            )
        )
        return self.find(conn, account_id), True

    def create_distributor_account(self, conn: Connection, display_name: str) -> Account:
        account_id = new_account_id()
        conn.execute(
            insert(accounts).values(
                account_id=account_id,
                kind=AccountKind.DISTRIBUTOR.value,
                display_name=clean_text(display_name, "display name"),
                created_at=self._clock(),
            )
        )
        return self.find(conn, account_id)

    def create_sub_account(
        self, parent_account_id: str, display_name: str, external_ref: str = ""
    ) -> Account:
        """A customer of a distributor (or child of an enterprise).

        `external_ref`, the parent's own id for it, makes the call idempotent: repeating it returns
        the existing sub-account, unless the display name differs (Conflict). Without one, every
        call creates a new sub-account.
        """
        display_name = clean_text(display_name, "display name")
        ref = external_ref.strip() or None
        if ref is not None and len(ref) > _MAX_NAME:
            raise InvalidInput(f"external reference is at most {_MAX_NAME} characters")
        try:
            with self._engine.begin() as conn:
                return self._create_sub_account(conn, parent_account_id, display_name, ref)
        except IntegrityError:
            if ref is None:
                raise
            # A concurrent call with the same reference won; answer as its replay.
            with self._engine.begin() as conn:
                return self._create_sub_account(conn, parent_account_id, display_name, ref)

    def _create_sub_account(
        self, conn: Connection, parent_account_id: str, display_name: str, external_ref: str | None
    ) -> Account:
        parent = self.find(conn, parent_account_id)
        child_kind = _CHILD_KIND.get(parent.kind)
        if child_kind is None:
            raise PreconditionFailed(f"a {parent.kind.value} account cannot have sub-accounts")
        if external_ref is not None:
            existing = conn.execute(
                account_query().where(
                    accounts.c.parent_account_id == parent_account_id, accounts.c.external_ref == external_ref
                )
            ).one_or_none()
            if existing is not None:
                if existing.display_name != display_name:
                    raise Conflict(f"external reference {external_ref!r} is already used for another name")
                return to_account(existing)
        account_id = new_account_id()
        conn.execute(
            insert(accounts).values(
                account_id=account_id,
                kind=child_kind.value,
                display_name=display_name,
                parent_account_id=parent_account_id,
                external_ref=external_ref,
                created_at=self._clock(),
            )
        )
        return self.find(conn, account_id)

    def list_sub_accounts(
        self, parent_account_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Account], str]:
        """One page of sub-accounts, oldest first, and the token of the next page ("" at the end)."""
        if page_size < 0:
            raise InvalidInput("page size cannot be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = 0
        if page_token:
            found = paging.position(page_token)
            if found is None:
                raise InvalidInput("page token is not one this service issued")
            after = found
        with self._engine.connect() as conn:
            self.find(conn, parent_account_id)
            rows = conn.execute(
                account_query()
                .where(accounts.c.parent_account_id == parent_account_id, accounts.c.seq > after)
                .order_by(accounts.c.seq)
                .limit(size + 1)
            ).all()
        next_token = str(rows[size - 1].seq) if len(rows) > size else ""
        return [to_account(row) for row in rows[:size]], next_token
