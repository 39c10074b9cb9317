"""Celery entry points of the ledger. Thin: each calls one idempotent function."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from ledger import metrics, topup
from ledger.reconciliation import reconcile

logger = logging.getLogger(__name__)


@shared_task
def ledger_reconcile() -> dict[str, Any]:
    """The periodic audit (beat). Logs an error with the report when anything differs."""
    report = reconcile()
    metrics.reconciliation_record(clean=report.is_clean, differences=len(report.differences))
    if report.is_clean:
        logger.info("ledger reconciliation: %s", report.lines()[0])
    else:
        logger.error("ledger reconciliation found differences:\n%s", "\n".join(report.lines()))
    return {
        "clean": report.is_clean,
        "accounts": report.accounts,
        "differences": [str(difference) for difference in report.differences],
    }


@shared_task(name="ledger.tasks.auto_topup_check")
def auto_topup_check(*, owner_ref: str) -> str:
    """Top up one wallet from its saved card if it is below its threshold."""
    return topup.auto_topup_run(owner_ref=owner_ref)


@shared_task
def auto_topup_sweep() -> int:
    """Look at every wallet with automatic top-up (a safety net for missed signals)."""
    return topup.auto_topup_sweep()
