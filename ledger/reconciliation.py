"""The audit: recompute the books from the transfers and compare them with everything cached.

Checks, each reported as a list of differences (an empty report is a sound ledger):

1. every cached balance equals the sum of its transfers (credits received minus sent);
2. the whole ledger sums to zero, cached and recomputed;
3. no account that may not go negative is negative;
4. every resolved escrow is empty;
5. every escrow holds what the market expects of its task (the open bounty minus what it delegated
   to open subtasks), when ``settings.LEDGER_ESCROW_EXPECTATIONS`` names a callable returning
   ``{task_ref: credits}``; escrows holding credits for tasks the market does not list differ too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string

from core.transactions import consistent_reads


@dataclass(frozen=True)
class Difference:
    check: str
    subject: str
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: expected {self.expected}, found {self.actual}"


@dataclass
class ReconciliationReport:
    started_at: datetime
    accounts: int = 0
    transfers: int = 0
    escrows_checked: int = 0
    escrow_expectations: bool = False
    differences: list[Difference] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        head = (
            f"Reconciliation at {self.started_at:%Y-%m-%d %H:%M:%S} UTC: {self.accounts} accounts,"
            f" {self.transfers} transfers, {self.escrows_checked} escrows checked"
            + ("" if self.escrow_expectations else " (no escrow expectations configured)")
        )
        if self.is_clean:
            return [head, "No differences."]
        return [head, f"{len(self.differences)} difference(s):"] + [
            f"  - {difference}" for difference in self.differences
        ]


_BALANCES_SQL = """
WITH moves AS (
    SELECT debit_account_id AS account_id, -sum(amount) AS delta, count(*) AS n
        FROM ledger_transfer GROUP BY debit_account_id
    UNION ALL
    SELECT credit_account_id, sum(amount), 0 FROM ledger_transfer GROUP BY credit_account_id
)
SELECT a.address, a.balance, COALESCE(sum(m.delta), 0)::bigint, a.may_go_negative,
       COALESCE(sum(m.n), 0)::bigint
FROM ledger_account a LEFT JOIN moves m ON m.account_id = a.id
GROUP BY a.id
ORDER BY a.id
"""

_ESCROWS_SQL = """
SELECT e.task_ref, e.status, a.balance FROM ledger_escrow e JOIN ledger_account a
    ON a.id = e.account_id
"""


def _expectations() -> dict[str, int] | None:
    path = getattr(settings, "LEDGER_ESCROW_EXPECTATIONS", "") or ""
    if not path:
        return None
    return dict(import_string(path)())


def reconcile() -> ReconciliationReport:
    """Run every check in one repeatable-read snapshot, so that concurrent postings are not
    mistaken for differences."""
    report = ReconciliationReport(started_at=datetime.now(tz=UTC))
    differences = report.differences
    with consistent_reads(), connection.cursor() as cursor:
        cursor.execute(_BALANCES_SQL)
        balances = cursor.fetchall()
        cursor.execute(_ESCROWS_SQL)
        escrows = cursor.fetchall()
        expected = _expectations()
    cached_total = recomputed_total = 0
    for address, cached, recomputed, may_go_negative, transfers in balances:
        report.accounts += 1
        report.transfers += transfers
        cached_total += cached
        recomputed_total += recomputed
        if cached != recomputed:
            differences.append(Difference("cached balance", address, recomputed, cached))
        if cached < 0 and not may_go_negative:
            differences.append(Difference("negative balance", address, 0, cached))
    if cached_total != 0:
        differences.append(Difference("ledger total", "sum of cached balances", 0, cached_total))
    if recomputed_total != 0:
        differences.append(Difference("ledger total", "sum of transfers", 0, recomputed_total))

    by_task = {task_ref: (status, balance) for task_ref, status, balance in escrows}
    for task_ref, (status, balance) in by_task.items():
        if status != "open" and balance != 0:
            differences.append(Difference(f"resolved ({status}) escrow", task_ref, 0, balance))
    if expected is not None:
        report.escrow_expectations = True
        for task_ref in sorted(set(expected) | {t for t, (_, b) in by_task.items() if b}):
            actual = by_task.get(task_ref, ("none", 0))[1]
            report.escrows_checked += 1
            if actual != expected.get(task_ref, 0):
                differences.append(
                    Difference("escrow", task_ref, expected.get(task_ref, 0), actual)
                )
    return report
