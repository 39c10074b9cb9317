"""``manage.py reconcile``: the ledger's audit; exits 1 with a report on any difference."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger.reconciliation import reconcile


class Command(BaseCommand):
    help = (
        "Recompute every cached balance from the transfers, check that the ledger sums to zero"
        " and that every escrow matches its task; exit 1 with a report on any difference."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = reconcile()
        for line in report.lines():
            self.stdout.write(line)
        if not report.is_clean:
            raise CommandError(f"{len(report.differences)} difference(s) in the ledger.")
