"""Real threads, each with its own database connection, racing on the same accounts."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.exceptions import InsufficientCredits, LedgerBusy
from ledger.models import Account, JournalEntry
from ledger.reconciliation import reconcile
from tests.ledger.conftest import funded_wallet, new_ref

pytestmark = pytest.mark.django_db(transaction=True)


def race(count: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job(i)`` in ``count`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)

    def run(number: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return job(number)
        except Exception as error:  # collected and asserted on by the test
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def kinds(results: list[Any]) -> Counter:
    return Counter(type(result).__name__ for result in results)


def test_fifty_parallel_spends_of_ten_from_a_hundred() -> None:
    payer = funded_wallet(100)
    tasks = [new_ref("task") for _ in range(50)]
    results = race(
        50,
        lambda i: services.escrow_lock(
            task_ref=tasks[i], payer_ref=payer, amount=10, idempotency_key=f"spend:{i}"
        ),
    )
    assert kinds(results) == {"JournalEntry": 10, "InsufficientCredits": 40}
    assert selectors.balance_for(owner_ref=payer) == selectors.Balance(100, 100, 0)
    assert all(r.available == 0 for r in results if isinstance(r, InsufficientCredits))
    assert reconcile().is_clean


def test_opposite_transfers_never_fail_on_a_deadlock() -> None:
    alice, bob = funded_wallet(10_000), funded_wallet(10_000)

    def job(number: int) -> int:
        source, destination = (alice, bob) if number % 2 else (bob, alice)
        for step in range(10):
            services.transfer_post(
                legs=[
                    services.TransferLeg(source=source, destination=destination, amount=7),
                    services.TransferLeg(source=destination, destination=source, amount=3),
                ],
                idempotency_key=f"swap:{number}:{step}",
            )
        return step + 1

    results = race(20, job)
    assert results == [10] * 20  # no LedgerBusy, no deadlock, no insufficient credits
    assert selectors.balance_for(owner_ref=alice).available == 10_000
    assert selectors.balance_for(owner_ref=bob).available == 10_000
    assert reconcile().is_clean


def test_fifty_concurrent_requests_with_one_key_make_one_entry() -> None:
    payer = funded_wallet(1_000)
    task = new_ref("task")
    results = race(
        50,
        lambda i: services.escrow_lock(
            task_ref=task, payer_ref=payer, amount=100, idempotency_key="one-key"
        ),
    )
    assert kinds(results) == {"JournalEntry": 50}
    assert len({entry.pk for entry in results}) == 1
    assert JournalEntry.objects.filter(idempotency_key="one-key").count() == 1
    assert selectors.escrow_balance(task_ref=task) == 100
    assert selectors.balance_for(owner_ref=payer).available == 900


def test_concurrent_resolutions_of_one_escrow_have_one_winner() -> None:
    poster, worker = funded_wallet(1_000), funded_wallet(0)
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=poster, amount=500, idempotency_key="l")
    plan = services.settlement_plan(
        escrow=500, payout=500, fee_basis_points=500, royalties=[], royalty_cap_basis_points=0
    )

    def job(number: int) -> Any:
        if number % 2:
            return services.escrow_refund(
                task_ref=task, refund_to=poster, idempotency_key=f"r{number}"
            )
        return services.escrow_settle(
            task_ref=task,
            payee_ref=worker,
            refund_to=poster,
            plan=plan,
            idempotency_key=f"s{number}",
        )

    results = race(20, job)
    assert kinds(results) == {"JournalEntry": 1, "EscrowAlreadyResolved": 19}
    assert selectors.escrow_balance(task_ref=task) == 0
    paid = selectors.balance_for(owner_ref=worker).available
    assert paid in (0, 475)
    assert reconcile().is_clean


def _deadlock_with(post: Callable[[], Any]) -> Any:
    """Make ``post`` (which locks the poorer wallet, then the richer) the victim of a deadlock.

    Another transaction holds the richer wallet's row; ``post`` locks the poorer one and waits;
    then the other asks for the poorer one. ``post`` waited first, so PostgreSQL picks it.
    """
    first, second = funded_wallet(1_000), funded_wallet(1_000)
    ids = dict(Account.objects.values_list("address", "id"))
    low, high = sorted([ids[f"wallet:{first}"], ids[f"wallet:{second}"]])
    holding = threading.Event()

    def other() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [high])
            holding.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until ``post`` holds ``low`` and waits for us
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND query LIKE %s"
                    " AND pid <> pg_backend_pid()",
                    ["%ledger_post%"],
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.01)
            cursor.execute("SELECT 1 FROM ledger_account WHERE id = %s FOR UPDATE", [low])
            time.sleep(0.1)
        connection.close()

    thread = threading.Thread(target=other)
    thread.start()
    holding.wait(5)
    try:
        return post(first, second)
    finally:
        thread.join()


def test_a_deadlock_is_retried_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ledger.services")
    entry = _deadlock_with(
        lambda a, b: services.transfer_post(
            legs=[services.TransferLeg(source=a, destination=b, amount=100)],
            idempotency_key="victim",
        )
    )
    assert entry.pk
    assert "ledger posting victim retried" in caplog.text
    assert JournalEntry.objects.filter(idempotency_key="victim").count() == 1
    assert reconcile().is_clean


def test_inside_a_callers_transaction_a_deadlock_is_ledger_busy_never_insufficient() -> None:
    def post(a: str, b: str) -> Any:
        try:
            with transaction.atomic():
                services.transfer_post(
                    legs=[services.TransferLeg(source=a, destination=b, amount=100)],
                    idempotency_key="inner",
                )
        except LedgerBusy as error:
            return error

    assert isinstance(_deadlock_with(post), LedgerBusy)
    assert not JournalEntry.objects.filter(idempotency_key="inner").exists()
