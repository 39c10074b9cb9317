"""The ledger's Prometheus metrics (served by marketplace/metrics.py with the others)."""

from __future__ import annotations

import time

from django.core.cache import cache
from prometheus_client import Counter

SETTLEMENTS = Counter("market_settlements_total", "Escrow settlements committed")
SETTLED_CREDITS = Counter("market_settled_credits_total", "Credits of committed settlements")
# The last reconciliation's result, for every process's scrape (it runs in one worker).
RECONCILIATION_KEY = "metrics:ledger-reconciliation"


def settlement_committed(escrow: int) -> None:
    SETTLEMENTS.inc()
    SETTLED_CREDITS.inc(escrow)


def reconciliation_record(*, clean: bool, differences: int) -> None:
    cache.set(
        RECONCILIATION_KEY,
        {"clean": clean, "differences": differences, "at": time.time()},
        timeout=None,
    )
