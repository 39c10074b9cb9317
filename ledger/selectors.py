"""Reads of the ledger: balances, statements, the trial balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Sum

from ledger.models import Account, Escrow, JournalEntry, Transfer
from ledger.services import PLATFORM_FEES, escrow_address, fee_addresses, wallet_address


@dataclass(frozen=True)
class Balance:
    """A participant's credits, as a bank shows them.

    ``available`` is what the wallet holds and can spend now; ``held`` is locked in the open
    escrows this participant funded (bounties of tasks not yet settled or refunded, including
    budget delegated to their subtasks); ``posted = available + held`` is everything they own.
    """

    posted: int
    held: int
    available: int


def balance_for(*, owner_ref: str) -> Balance:
    available = (
        Account.objects.filter(address=wallet_address(owner_ref))
        .values_list("balance", flat=True)
        .first()
    ) or 0
    held = (
        Escrow.objects.filter(funder_ref=owner_ref, status=Escrow.Status.OPEN).aggregate(
            total=Sum("account__balance")
        )["total"]
        or 0
    )
    return Balance(posted=available + held, held=held, available=available)


def escrow_balance(*, task_ref: str) -> int:
    """The credits in a task's escrow; 0 if it has none."""
    return (
        Account.objects.filter(address=escrow_address(task_ref))
        .values_list("balance", flat=True)
        .first()
    ) or 0


def credited_to(*, owner_ref: str, domain_ref: str, reason: str) -> int:
    """What the entries of ``reason`` about ``domain_ref`` put into the wallet of ``owner_ref``:
    the net of a task's settlement for its assignee (after the fee and royalties), for one."""
    return (
        Transfer.objects.filter(
            entry__domain_ref=domain_ref,
            entry__reason=reason,
            credit_account__address=wallet_address(owner_ref),
        ).aggregate(total=Sum("amount"))["total"]
        or 0
    )


def account_for(*, address: str) -> Account | None:
    """The account at ``address``. For the platform fee account, kept as sub-accounts (see
    ``services.FEE_SUBACCOUNTS``), an unsaved account whose balance is their total."""
    if address != PLATFORM_FEES:
        return Account.objects.filter(address=address).first()
    total = Account.objects.filter(address__in=fee_addresses()).aggregate(total=Sum("balance"))
    return Account(
        address=PLATFORM_FEES,
        kind=Account.Kind.PLATFORM_FEES,
        owner_ref="platform",
        may_go_negative=True,
        balance=total["total"] or 0,
    )


@dataclass(frozen=True)
class StatementLine:
    transfer_id: int
    entry_id: int
    created_at: datetime
    reason: str
    reason_label: str
    domain_ref: str
    memo: str
    counterparty: str
    amount: int  # signed: positive when the account received credits
    balance_after: int


@dataclass(frozen=True)
class StatementPage:
    account: Account | None
    lines: list[StatementLine]
    next_before: int | None  # pass as ``before`` for the next (older) page

    @property
    def has_more(self) -> bool:
        return self.next_before is not None


_STATEMENT_SQL = """
WITH lines AS (
    SELECT t.id, t.entry_id, t.credit_account_id AS counterparty_id, -t.amount AS amount
        FROM ledger_transfer t WHERE t.debit_account_id = %(account)s AND t.id < %(before)s
    UNION ALL
    SELECT t.id, t.entry_id, t.debit_account_id, t.amount
        FROM ledger_transfer t WHERE t.credit_account_id = %(account)s AND t.id < %(before)s
), page AS (
    SELECT * FROM lines ORDER BY id DESC LIMIT %(limit)s
)
SELECT p.id, p.entry_id, e.created_at, e.reason, e.domain_ref, e.memo, c.address, p.amount,
       COALESCE(sum(p.amount) OVER (ORDER BY p.id DESC ROWS BETWEEN UNBOUNDED PRECEDING
                                                        AND 1 PRECEDING), 0) AS newer
FROM page p
JOIN ledger_journalentry e ON e.id = p.entry_id
JOIN ledger_account c ON c.id = p.counterparty_id
ORDER BY p.id DESC
"""

_NEWER_SQL = """
SELECT COALESCE(sum(CASE WHEN t.credit_account_id = %(account)s THEN t.amount
                         ELSE -t.amount END), 0)
FROM ledger_transfer t
WHERE (t.debit_account_id = %(account)s OR t.credit_account_id = %(account)s)
  AND t.id >= %(before)s
"""


def statement_for(
    *,
    owner_ref: str,
    before: int | None = None,
    limit: int = 20,
    address: str | None = None,
) -> StatementPage:
    """The lines of a wallet (or of ``address``), newest first, each with its running balance.

    Keyset pagination: ``before`` is the transfer id the previous page stopped at. The running
    balance is anchored on the cached balance (which reconciliation proves equals the transfers).
    """
    limit = max(1, min(limit, 200))
    account = Account.objects.filter(address=address or wallet_address(owner_ref)).first()
    if account is None:
        return StatementPage(account=None, lines=[], next_before=None)
    labels = dict(JournalEntry.Reason.choices)
    ceiling = before if before is not None else 2**62
    params = {"account": account.pk, "before": ceiling, "limit": limit + 1}
    with connection.cursor() as cursor:
        if before is None:
            newer_than_page = 0
        else:
            cursor.execute(_NEWER_SQL, params)
            newer_than_page = cursor.fetchone()[0]
        cursor.execute(_STATEMENT_SQL, params)
        rows = cursor.fetchall()
    start = account.balance - newer_than_page
    lines = [
        StatementLine(
            transfer_id=row[0],
            entry_id=row[1],
            created_at=row[2],
            reason=row[3],
            reason_label=labels.get(row[3], row[3]),
            domain_ref=row[4],
            memo=row[5],
            counterparty=row[6],
            amount=row[7],
            balance_after=start - row[8],
        )
        for row in rows[:limit]
    ]
    next_before = lines[-1].transfer_id if len(rows) > limit else None
    return StatementPage(account=account, lines=lines, next_before=next_before)


@dataclass(frozen=True)
class TrialBalanceRow:
    kind: str
    label: str
    accounts: int
    balance: int


@dataclass(frozen=True)
class TrialBalance:
    rows: list[TrialBalanceRow]
    total: int

    @property
    def is_balanced(self) -> bool:
        return self.total == 0


def trial_balance() -> TrialBalance:
    """Cached balances added up by kind of account; the grand total of a sound ledger is zero."""
    labels = dict(Account.Kind.choices)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, count(*), COALESCE(sum(balance), 0) FROM ledger_account"
            " GROUP BY kind ORDER BY kind"
        )
        rows = [
            TrialBalanceRow(kind=kind, label=labels.get(kind, kind), accounts=count, balance=total)
            for kind, count, total in cursor.fetchall()
        ]
    return TrialBalance(rows=rows, total=sum(row.balance for row in rows))
