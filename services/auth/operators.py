"""Operators: the people who refund orders, manage distributors and publish notices.

An operator signs in by phone and one-time code like anyone else; what makes them one is their
account's kind, which only an operator tool changes (`emeterai operators add|remove|list`). Tokens
carry the kind, so a promotion takes effect at the next sign-in, and a demotion signs the account
out everywhere at once (its sessions are revoked; access tokens already out expire within 15
minutes, or at once where the shared revocation list is used).
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.engine import Engine

from services.auth.accounts import Accounts, account_query, to_account
from services.auth.model import Account, AccountKind
from services.auth.phones import mask_phone, normalise_phone
from services.auth.store import accounts
from services.auth.tokens import Sessions
from services.common.errors import PreconditionFailed

log = logging.getLogger(__name__)

# Kinds a phone-number account may be switched between.
_PHONE_KINDS = {AccountKind.RETAIL, AccountKind.OPERATOR}


class Operators:
    def __init__(self, engine: Engine, accounts_: Accounts, sessions: Sessions) -> None:
        self._engine = engine
        self._accounts = accounts_
        self._sessions = sessions

    def set_operator(self, phone: str, operator: bool) -> Account:
        """Make the account of `phone` an operator (created if new), or a retail account again."""
        e164 = normalise_phone(phone)
        kind = AccountKind.OPERATOR if operator else AccountKind.RETAIL
        with self._engine.begin() as conn:
            account, _ = self._accounts.get_or_create_retail(conn, e164)
            if account.kind not in _PHONE_KINDS:
                raise PreconditionFailed("only a phone-number account can be an operator")
            if account.kind is not kind:
                conn.execute(
                    update(accounts)
                    .where(accounts.c.account_id == account.account_id)
                    .values(kind=kind.value)
                )
                if not operator:
                    self._sessions.revoke_account(conn, account.account_id)
            changed = self._accounts.find(conn, account.account_id)
        log.info(
            "operator role changed",
            extra={"phone": mask_phone(e164), "account_id": changed.account_id, "operator": operator},
        )
        return changed

    def list_operators(self) -> list[Account]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                account_query()
                .where(accounts.c.kind == AccountKind.OPERATOR.value)
                .order_by(accounts.c.phone)
            ).all()
        return [to_account(row) for row in rows]
