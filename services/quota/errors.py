"""Errors only the ledger raises; the rest come from services.common.errors."""

from __future__ import annotations

from services.common.errors import PreconditionFailed


class InsufficientQuota(PreconditionFailed):
    """The account has fewer available units than the operation needs."""


class HoldAlreadyResolved(PreconditionFailed):
    """The hold was already committed or released and cannot move again that way."""


class LedgerInconsistency(RuntimeError):
    """Stored balances disagree with the records that moved them: a bug, never the caller's fault.

    Deliberately not a DomainError, so the caller sees a bare INTERNAL and the log gets the details.
    """
