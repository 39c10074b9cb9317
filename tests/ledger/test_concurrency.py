"""Real threads, each with its own database connection, racing on the same accounts."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction

from ledger import selectors, services
from ledger.exceptions import InsufficientCredits, LedgerBusy
from ledger.models import JournalEntry
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


@pytest.fixture
def transient_failures() -> Iterator[Callable[[str, int], None]]:
    """Make the next ``count`` journal inserts fail with a real PostgreSQL error ``sqlstate``.

    A sequence counts the failures because it is not rolled back with the failed statement.
    Deadlocks themselves cannot happen between postings (locks are taken in one order), so a
    trigger raises the same errors PostgreSQL raises for a deadlock or a serialization failure.
    """

    def arm(sqlstate: str, count: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("CREATE SEQUENCE ledger_test_faults")
            cursor.execute(
                "CREATE FUNCTION ledger_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN IF nextval('ledger_test_faults') <= {count} THEN"
                f" RAISE EXCEPTION 'injected transient failure' USING ERRCODE = '{sqlstate}';"
                " END IF; RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER ledger_test_fault BEFORE INSERT ON ledger_journalentry"
                " FOR EACH ROW EXECUTE FUNCTION ledger_test_fault()"
            )

    yield arm
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS ledger_test_fault ON ledger_journalentry")
        cursor.execute("DROP FUNCTION IF EXISTS ledger_test_fault()")
        cursor.execute("DROP SEQUENCE IF EXISTS ledger_test_faults")


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])  # deadlock, serialization failure
def test_transient_failures_are_retried_not_reported(
    sqlstate: str, transient_failures: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = funded_wallet(1_000), funded_wallet(0)
    caplog.set_level(logging.INFO, logger="ledger.services")
    transient_failures(sqlstate, 2)
    entry = services.transfer_post(
        legs=[services.TransferLeg(source=alice, destination=bob, amount=100)],
        idempotency_key="victim",
    )
    assert entry.pk
    assert caplog.text.count("ledger posting victim retried") == 2
    assert JournalEntry.objects.filter(idempotency_key="victim").count() == 1
    assert selectors.balance_for(owner_ref=bob).available == 100
    assert reconcile().is_clean


def test_inside_a_callers_transaction_a_transient_failure_is_ledger_busy(
    transient_failures: Callable,
) -> None:
    alice, bob = funded_wallet(1_000), funded_wallet(0)
    transient_failures("40P01", 1)
    with pytest.raises(LedgerBusy), transaction.atomic():
        services.transfer_post(
            legs=[services.TransferLeg(source=alice, destination=bob, amount=100)],
            idempotency_key="inner",
        )
    assert not JournalEntry.objects.filter(idempotency_key="inner").exists()
    assert selectors.balance_for(owner_ref=alice).available == 1_000
