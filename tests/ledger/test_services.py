"""The ledger's services: escrow life cycle, idempotency, failures that change nothing."""

from __future__ import annotations

import pytest

from ledger import selectors, services
from ledger.exceptions import (
    EntryAlreadyReversed,
    EscrowAlreadyResolved,
    EscrowBalanceChanged,
    EscrowNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    LedgerError,
)
from ledger.models import Escrow, FailedOperation, JournalEntry
from ledger.selectors import Balance
from tests.ledger.conftest import funded_wallet, new_ref

pytestmark = pytest.mark.django_db


def plan_for(escrow: int, payout: int, royalties=(), fee_bp: int = 500, cap_bp: int = 1000):
    return services.settlement_plan(
        escrow=escrow,
        payout=payout,
        fee_basis_points=fee_bp,
        royalties=list(royalties),
        royalty_cap_basis_points=cap_bp,
    )


def fees() -> int:
    return selectors.account_for(address=services.PLATFORM_FEES).balance


def test_wallet_open_is_idempotent() -> None:
    owner = new_ref()
    first = services.wallet_open(owner_ref=owner)
    assert services.wallet_open(owner_ref=owner).pk == first.pk
    assert first.address == f"wallet:{owner}" and first.balance == 0
    assert not first.may_go_negative


def test_lock_settle_with_fee_royalty_and_remainder(poster: str, worker: str) -> None:
    creator = funded_wallet(0)
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=poster, amount=600, idempotency_key="lock")
    assert selectors.balance_for(owner_ref=poster) == Balance(posted=1000, held=600, available=400)
    assert selectors.escrow_balance(task_ref=task) == 600

    plan = plan_for(600, 500, royalties=[(creator, 300)])
    assert (plan.fee, plan.royalties, plan.assignee, plan.refund) == (
        25,
        ((creator, 15),),
        460,
        100,
    )
    entry = services.escrow_settle(
        task_ref=task, payee_ref=worker, refund_to=poster, plan=plan, idempotency_key="settle"
    )
    assert entry.reason == JournalEntry.Reason.ESCROW_SETTLE
    assert entry.transfers.count() == 4
    assert selectors.balance_for(owner_ref=worker).available == 460
    assert selectors.balance_for(owner_ref=creator).available == 15
    assert selectors.balance_for(owner_ref=poster) == Balance(posted=500, held=0, available=500)
    assert fees() == 25
    assert selectors.escrow_balance(task_ref=task) == 0
    assert Escrow.objects.get(task_ref=task).status == Escrow.Status.SETTLED
    assert selectors.trial_balance().total == 0


def test_replay_returns_first_entry_and_conflict_on_other_payload(poster: str) -> None:
    task = new_ref("task")
    first = services.escrow_lock(task_ref=task, payer_ref=poster, amount=100, idempotency_key="k")
    again = services.escrow_lock(task_ref=task, payer_ref=poster, amount=100, idempotency_key="k")
    assert again.pk == first.pk
    with pytest.raises(IdempotencyConflict):
        services.escrow_lock(task_ref=task, payer_ref=poster, amount=101, idempotency_key="k")
    assert selectors.escrow_balance(task_ref=task) == 100
    assert selectors.balance_for(owner_ref=poster).available == 900


def test_failed_debit_stays_failed_for_its_key(poster: str) -> None:
    task = new_ref("task")
    with pytest.raises(InsufficientCredits) as raised:
        services.escrow_lock(task_ref=task, payer_ref=poster, amount=5000, idempotency_key="big")
    assert raised.value.available == 1000 and raised.value.needed == 5000
    assert "1000 available, 5000 needed" in str(raised.value)
    assert FailedOperation.objects.filter(idempotency_key="big").exists()
    services.promo_grant(owner_ref=poster, amount=10_000, idempotency_key="more")
    with pytest.raises(InsufficientCredits) as again:
        services.escrow_lock(task_ref=task, payer_ref=poster, amount=5000, idempotency_key="big")
    assert again.value.available == 1000  # the answer first given, not a new attempt
    assert selectors.balance_for(owner_ref=poster).available == 11_000
    assert selectors.escrow_balance(task_ref=task) == 0
    with pytest.raises(IdempotencyConflict):
        services.escrow_lock(task_ref=task, payer_ref=poster, amount=1, idempotency_key="big")


def test_escrow_resolves_at_most_once(poster: str, worker: str) -> None:
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=poster, amount=300, idempotency_key="l")
    services.escrow_refund(task_ref=task, refund_to=poster, idempotency_key="r1")
    assert selectors.balance_for(owner_ref=poster) == Balance(1000, 0, 1000)
    with pytest.raises(EscrowAlreadyResolved):
        services.escrow_refund(task_ref=task, refund_to=poster, idempotency_key="r2")
    with pytest.raises(EscrowAlreadyResolved):
        services.escrow_settle(
            task_ref=task,
            payee_ref=worker,
            refund_to=poster,
            plan=plan_for(0, 0),
            idempotency_key="s",
        )
    with pytest.raises(EscrowAlreadyResolved):
        services.escrow_split(task_ref=task, parts={worker: 0}, idempotency_key="sp")
    with pytest.raises(EscrowAlreadyResolved):
        services.escrow_lock(task_ref=task, payer_ref=poster, amount=10, idempotency_key="l2")
    # The first refund's key still answers with its entry.
    assert services.escrow_refund(task_ref=task, refund_to=poster, idempotency_key="r1").pk
    assert selectors.balance_for(owner_ref=poster) == Balance(1000, 0, 1000)


def test_delegation_moves_budget_and_child_refund_returns_to_parent(
    poster: str, worker: str
) -> None:
    parent, child = new_ref("task"), new_ref("task")
    services.escrow_lock(task_ref=parent, payer_ref=poster, amount=500, idempotency_key="l")
    services.escrow_delegate(
        parent_task_ref=parent, child_task_ref=child, amount=200, idempotency_key="d"
    )
    assert selectors.escrow_balance(task_ref=parent) == 300
    assert selectors.escrow_balance(task_ref=child) == 200
    # Delegated budget is still the poster's, held.
    assert selectors.balance_for(owner_ref=poster) == Balance(1000, 500, 500)
    with pytest.raises(InsufficientCredits):
        services.escrow_delegate(
            parent_task_ref=parent, child_task_ref=new_ref("task"), amount=301, idempotency_key="x"
        )
    services.escrow_refund(task_ref=child, refund_to=parent, idempotency_key="cr")
    assert selectors.escrow_balance(task_ref=parent) == 500
    assert Escrow.objects.get(task_ref=parent).status == Escrow.Status.OPEN
    services.escrow_settle(
        task_ref=parent,
        payee_ref=worker,
        refund_to=poster,
        plan=plan_for(500, 500),
        idempotency_key="s",
    )
    assert selectors.balance_for(owner_ref=worker).available == 475


def test_cannot_refund_into_a_resolved_escrow(poster: str, worker: str) -> None:
    parent, child = new_ref("task"), new_ref("task")
    services.escrow_lock(task_ref=parent, payer_ref=poster, amount=500, idempotency_key="l")
    services.escrow_delegate(
        parent_task_ref=parent, child_task_ref=child, amount=200, idempotency_key="d"
    )
    services.escrow_settle(
        task_ref=parent,
        payee_ref=worker,
        refund_to=poster,
        plan=plan_for(300, 300),
        idempotency_key="s",
    )
    with pytest.raises(EscrowAlreadyResolved):
        services.escrow_refund(task_ref=child, refund_to=parent, idempotency_key="cr")
    assert selectors.escrow_balance(task_ref=child) == 200
    services.escrow_refund(task_ref=child, refund_to=poster, idempotency_key="cr2")
    assert selectors.balance_for(owner_ref=poster).held == 0


def test_stale_plan_is_refused(poster: str, worker: str) -> None:
    parent = new_ref("task")
    services.escrow_lock(task_ref=parent, payer_ref=poster, amount=500, idempotency_key="l")
    plan = plan_for(500, 400)
    services.escrow_delegate(
        parent_task_ref=parent, child_task_ref=new_ref("task"), amount=100, idempotency_key="d"
    )
    with pytest.raises(EscrowBalanceChanged):
        services.escrow_settle(
            task_ref=parent, payee_ref=worker, refund_to=poster, plan=plan, idempotency_key="s"
        )
    assert selectors.escrow_balance(task_ref=parent) == 400
    assert selectors.balance_for(owner_ref=worker).available == 0


def test_split_must_name_every_credit(poster: str, worker: str) -> None:
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=poster, amount=1000, idempotency_key="l")
    with pytest.raises(EscrowBalanceChanged):
        services.escrow_split(task_ref=task, parts={worker: 500, poster: 400}, idempotency_key="x")
    entry = services.escrow_split(
        task_ref=task,
        parts={worker: 550, poster: 400, "platform:fees": 50},
        idempotency_key="split",
        memo="Dispute #3: partial delivery",
    )
    assert entry.memo == "Dispute #3: partial delivery"
    assert selectors.balance_for(owner_ref=worker).available == 550
    assert selectors.balance_for(owner_ref=poster) == Balance(400, 0, 400)
    assert Escrow.objects.get(task_ref=task).status == Escrow.Status.SPLIT


def test_reversal_mirrors_the_entry_once_and_reopens_a_settled_escrow(
    poster: str, worker: str
) -> None:
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=poster, amount=400, idempotency_key="l")
    settle = services.escrow_settle(
        task_ref=task,
        payee_ref=worker,
        refund_to=poster,
        plan=plan_for(400, 400),
        idempotency_key="s",
    )
    reversal = services.entry_reverse(
        entry_id=settle.pk, reason="settled by mistake", actor_ref="staff:1", idempotency_key="rv"
    )
    assert reversal.reverses_id == settle.pk and reversal.actor_ref == "staff:1"
    assert reversal.memo == "settled by mistake"
    assert selectors.escrow_balance(task_ref=task) == 400
    assert selectors.balance_for(owner_ref=worker).available == 0
    assert fees() == 0
    assert Escrow.objects.get(task_ref=task).status == Escrow.Status.OPEN
    with pytest.raises(EntryAlreadyReversed):
        services.entry_reverse(
            entry_id=settle.pk, reason="again", actor_ref="staff:1", idempotency_key="rv2"
        )
    services.escrow_refund(task_ref=task, refund_to=poster, idempotency_key="r")
    assert selectors.balance_for(owner_ref=poster) == Balance(1000, 0, 1000)


def test_reversal_never_drives_a_wallet_negative(poster: str, worker: str) -> None:
    grant = services.promo_grant(owner_ref=worker, amount=100, idempotency_key="g")
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=worker, amount=80, idempotency_key="l")
    with pytest.raises(InsufficientCredits):
        services.entry_reverse(
            entry_id=grant.pk, reason="fraud", actor_ref="staff:1", idempotency_key="rv"
        )
    assert selectors.balance_for(owner_ref=worker) == Balance(100, 80, 20)


def test_transfer_with_many_legs_is_all_or_nothing(poster: str, worker: str) -> None:
    legs = [
        services.TransferLeg(source=poster, destination=worker, amount=600),
        services.TransferLeg(source=poster, destination=worker, amount=600),
    ]
    with pytest.raises(InsufficientCredits):
        services.transfer_post(legs=legs, idempotency_key="t")
    assert selectors.balance_for(owner_ref=worker).available == 0
    services.transfer_post(legs=legs[:1], idempotency_key="t1")
    assert selectors.balance_for(owner_ref=worker).available == 600


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10"])
def test_amounts_must_be_positive_whole_credits(poster: str, amount: object) -> None:
    with pytest.raises(LedgerError):
        services.escrow_lock(
            task_ref=new_ref("task"), payer_ref=poster, amount=amount, idempotency_key="k"
        )
    assert selectors.balance_for(owner_ref=poster).available == 1000


def test_unknown_escrow(poster: str, worker: str) -> None:
    with pytest.raises(EscrowNotFound):
        services.escrow_refund(task_ref="task:404", refund_to=poster, idempotency_key="r")
    with pytest.raises(EscrowNotFound):
        services.escrow_delegate(
            parent_task_ref="task:404", child_task_ref="task:405", amount=1, idempotency_key="d"
        )


def test_statement_pages_with_running_balance(poster: str) -> None:
    for number in range(5):
        services.escrow_lock(
            task_ref=new_ref("task"),
            payer_ref=poster,
            amount=10 * (number + 1),
            idempotency_key=f"l{number}",
        )
    first = selectors.statement_for(owner_ref=poster, limit=4)
    assert [line.amount for line in first.lines] == [-50, -40, -30, -20]
    assert [line.balance_after for line in first.lines] == [850, 900, 940, 970]
    assert first.has_more
    second = selectors.statement_for(owner_ref=poster, before=first.next_before, limit=4)
    assert [line.amount for line in second.lines] == [-10, 1000]
    assert [line.balance_after for line in second.lines] == [990, 1000]
    assert not second.has_more
