"""A Hypothesis state machine drives the ledger against a simple reference model.

Rules: lock, delegate, settle, refund, dispute (split), reverse, purchase (a webhook), refund at
Stripe (a webhook, possibly before the payment's own webhook), duplicated webhooks and replayed
requests, in any order. After every step the invariants are checked:

1. the ledger sums to zero and every cached balance equals its transfers (reconciliation);
2. no wallet or escrow is negative;
3. every escrow holds what the model expects of its task (reconciliation with expectations);
4. no escrow is resolved twice (one resolution entry per resolution the model allowed);
5. a replayed request or a duplicated webhook has exactly one effect (balances equal the model's).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from ledger import selectors, services
from ledger.exceptions import EscrowAlreadyResolved, EscrowNotFound, InsufficientCredits
from ledger.models import Account, JournalEntry, Purchase
from ledger.purchases import stripe_event_apply
from ledger.reconciliation import reconcile

# What the market would expect of every escrow posted by any example of this test run (examples
# share the database; reconciliation reads this through LEDGER_ESCROW_EXPECTATIONS).
EXPECTED_ESCROWS: dict[str, int] = {}


def platform_balance(address: str) -> int:
    account = selectors.account_for(address=address)
    return account.balance if account is not None else 0


def expected_escrows() -> dict[str, int]:
    return dict(EXPECTED_ESCROWS)


_numbers = itertools.count(1)
PLATFORM = ("platform:fees", "platform:stripe_clearing", "platform:promotional")
FEE_BP, CAP_BP = 500, 1000
REVERSIBLE = {
    "promo_grant",
    "escrow_lock",
    "escrow_delegate",
    "escrow_settle",
    "escrow_refund",
    "escrow_split",
    "transfer",
}


class LedgerMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        run = next(_numbers)
        self.people = [f"participant:{800_000 + run * 10 + i}" for i in range(3)]
        self.balances: dict[str, int] = {}  # address -> expected balance (people, escrows)
        self.platform_start = {address: platform_balance(address) for address in PLATFORM}
        self.platform: dict[str, int] = dict.fromkeys(PLATFORM, 0)  # change since the start
        self.escrows: dict[str, dict[str, Any]] = {}  # task -> funder, parent, status
        self.entries: list[dict[str, Any]] = []  # posted entries: id, reason, legs, resolves
        self.requests: list[tuple[str, dict[str, Any], int]] = []  # replayable calls
        self.events: list[dict[str, Any]] = []
        self.purchases: dict[int, dict[str, int]] = {}  # id -> credits, cents, refunded, paid
        self.resolutions = 0
        for person in self.people:
            services.wallet_open(owner_ref=person)

    # --- the model's bookkeeping ------------------------------------------------------------------

    def balance(self, address: str) -> int:
        return self.balances.get(address, 0)

    def move(self, legs: list[tuple[str, str, int]]) -> None:
        for debit, credit, amount in legs:
            for address, delta in ((debit, -amount), (credit, amount)):
                if address in self.platform:
                    self.platform[address] += delta
                else:
                    self.balances[address] = self.balance(address) + delta

    def affordable(self, legs: list[tuple[str, str, int]]) -> bool:
        net: dict[str, int] = {}
        for debit, credit, amount in legs:
            net[debit] = net.get(debit, 0) - amount
            net[credit] = net.get(credit, 0) + amount
        return all(
            self.balance(address) + delta >= 0
            for address, delta in net.items()
            if address.startswith(("wallet:", "escrow:"))
        )

    def record(self, entry: JournalEntry, legs: list, resolves: str | None = None) -> None:
        self.entries.append(
            {
                "id": entry.pk,
                "reason": entry.reason,
                "legs": legs,
                "resolves": resolves,
                "reversed": False,
            }
        )

    def expect(self, task: str) -> None:
        escrow = self.escrows[task]
        EXPECTED_ESCROWS[task] = self.balance(f"escrow:{task}") if escrow["status"] == "open" else 0

    def expect_all(self, legs: list[tuple[str, str, int]]) -> None:
        for leg in legs:
            for address in leg[:2]:
                if address.startswith("escrow:"):
                    self.expect(address[len("escrow:") :])

    def target(self, ref: str) -> str:
        return f"escrow:{ref}" if ref.startswith("task:") else f"wallet:{ref}"

    # --- rules ------------------------------------------------------------------------------------

    @rule(person=st.integers(0, 2), amount=st.integers(1, 3_000))
    def grant(self, person: int, amount: int) -> None:
        owner = self.people[person]
        key = f"grant:{owner}:{next(_numbers)}"
        entry = services.promo_grant(owner_ref=owner, amount=amount, idempotency_key=key)
        legs = [("platform:promotional", f"wallet:{owner}", amount)]
        self.move(legs)
        self.record(entry, legs)
        self.requests.append(
            (
                "promo_grant",
                {"owner_ref": owner, "amount": amount, "idempotency_key": key},
                entry.pk,
            )
        )

    @rule(target=tasks, person=st.integers(0, 2), amount=st.integers(1, 2_000))
    def lock(self, person: int, amount: int) -> str:
        payer, task = self.people[person], f"task:{700_000 + next(_numbers)}"
        legs = [(f"wallet:{payer}", f"escrow:{task}", amount)]
        key = f"lock:{task}"
        self.escrows[task] = {"funder": payer, "parent": None, "status": "open", "exists": True}
        # A debt (a receivable left by a refund of spent credits) blocks spending until repaid.
        if self.affordable(legs) and self.balance(f"receivable:{payer}") >= 0:
            entry = services.escrow_lock(
                task_ref=task, payer_ref=payer, amount=amount, idempotency_key=key
            )
            self.move(legs)
            self.record(entry, legs)
            self.requests.append(
                (
                    "escrow_lock",
                    {
                        "task_ref": task,
                        "payer_ref": payer,
                        "amount": amount,
                        "idempotency_key": key,
                    },
                    entry.pk,
                )
            )
        else:
            with pytest.raises(InsufficientCredits):
                services.escrow_lock(
                    task_ref=task, payer_ref=payer, amount=amount, idempotency_key=key
                )
            if self.balance(f"receivable:{payer}") < 0:
                # Refused for the debt before the escrow is opened (a short wallet's refusal
                # comes after it, so only a short wallet without a debt leaves an escrow).
                self.escrows[task]["exists"] = False
        self.expect(task)
        return task

    @rule(target=tasks, parent=tasks, amount=st.integers(1, 1_500))
    def delegate(self, parent: str, amount: int) -> str:
        child = f"task:{700_000 + next(_numbers)}"
        legs = [(f"escrow:{parent}", f"escrow:{child}", amount)]
        key = f"delegate:{child}"
        call = {
            "parent_task_ref": parent,
            "child_task_ref": child,
            "amount": amount,
            "idempotency_key": key,
        }
        self.escrows[child] = {
            "funder": self.escrows[parent]["funder"],
            "parent": parent,
            "status": "open",
            "exists": self.escrows[parent]["exists"] and self.escrows[parent]["status"] == "open",
        }
        if not self.escrows[parent]["exists"]:
            with pytest.raises(EscrowNotFound):
                services.escrow_delegate(**call)
        elif self.escrows[parent]["status"] != "open":
            with pytest.raises(EscrowAlreadyResolved):
                services.escrow_delegate(**call)
        elif not self.affordable(legs):
            with pytest.raises(InsufficientCredits):
                services.escrow_delegate(**call)
        else:
            entry = services.escrow_delegate(**call)
            self.move(legs)
            self.record(entry, legs)
            self.expect_all(legs)
        self.expect(child)
        return child

    def _resolve(self, task: str, status: str, legs: list, call: Any) -> None:
        escrow = self.escrows[task]
        legs = [leg for leg in legs if leg[2] > 0]
        if not escrow["exists"]:
            with pytest.raises(EscrowNotFound):
                call()
            return
        if escrow["status"] != "open" or any(
            self.escrows.get(credit[len("escrow:") :], {}).get("status", "open") != "open"
            for _, credit, _ in legs
            if credit.startswith("escrow:")
        ):
            with pytest.raises(EscrowAlreadyResolved):
                call()
            return
        entry = call()
        self.move(legs)
        escrow["status"] = status
        self.resolutions += 1
        self.record(entry, legs, resolves=task)
        self.expect(task)
        self.expect_all(legs)

    @rule(
        task=tasks,
        payee=st.integers(0, 2),
        share=st.integers(0, 100),
        royalty=st.integers(0, 2_000),
    )
    def settle(self, task: str, payee: int, share: int, royalty: int) -> None:
        escrow = self.balance(f"escrow:{task}")
        plan = services.settlement_plan(
            escrow=escrow,
            payout=escrow * share // 100,
            fee_basis_points=FEE_BP,
            royalties=[(self.people[(payee + 1) % 3], royalty)],
            royalty_cap_basis_points=CAP_BP,
        )
        refund_to = self.escrows[task]["parent"] or self.escrows[task]["funder"]
        source = f"escrow:{task}"
        legs = [
            (source, f"wallet:{self.people[payee]}", plan.assignee),
            (source, "platform:fees", plan.fee),
            *((source, f"wallet:{owner}", amount) for owner, amount in plan.royalties),
            (source, self.target(refund_to), plan.refund),
        ]
        self._resolve(
            task,
            "settled",
            legs,
            lambda: services.escrow_settle(
                task_ref=task,
                payee_ref=self.people[payee],
                refund_to=refund_to,
                plan=plan,
                idempotency_key=f"settle:{task}:{next(_numbers)}",
            ),
        )

    @rule(task=tasks)
    def refund(self, task: str) -> None:
        refund_to = self.escrows[task]["parent"] or self.escrows[task]["funder"]
        legs = [(f"escrow:{task}", self.target(refund_to), self.balance(f"escrow:{task}"))]
        self._resolve(
            task,
            "refunded",
            legs,
            lambda: services.escrow_refund(
                task_ref=task,
                refund_to=refund_to,
                idempotency_key=f"refund:{task}:{next(_numbers)}",
            ),
        )

    @rule(task=tasks, worker=st.integers(0, 2), share=st.integers(0, 100))
    def dispute(self, task: str, worker: int, share: int) -> None:
        escrow = self.balance(f"escrow:{task}")
        to_worker = escrow * share // 100
        fee = (escrow - to_worker) // 20
        funder = self.escrows[task]["funder"]
        parts: dict[str, int] = {}
        for ref, amount in (
            (self.people[worker], to_worker),
            ("platform:fees", fee),
            (funder, escrow - to_worker - fee),
        ):
            parts[ref] = parts.get(ref, 0) + amount
        legs = [
            (
                f"escrow:{task}",
                "platform:fees" if ref == "platform:fees" else f"wallet:{ref}",
                amount,
            )
            for ref, amount in parts.items()
        ]
        self._resolve(
            task,
            "split",
            legs,
            lambda: services.escrow_split(
                task_ref=task, parts=parts, idempotency_key=f"split:{task}:{next(_numbers)}"
            ),
        )

    @precondition(lambda self: self.entries)
    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick: int) -> None:
        candidates = [
            e for e in self.entries if e["reason"] in REVERSIBLE and not e["reversed"] and e["legs"]
        ]
        if not candidates:
            return
        original = candidates[pick % len(candidates)]
        legs = [(credit, debit, amount) for debit, credit, amount in original["legs"]]
        call = lambda: services.entry_reverse(  # noqa: E731
            entry_id=original["id"],
            reason="test",
            actor_ref="staff:1",
            # A fresh key per attempt: a failed reversal's key stays failed (tested elsewhere).
            idempotency_key=f"reverse:{original['id']}:{next(_numbers)}",
        )
        reopened = original["resolves"]
        touched = {
            address[len("escrow:") :]
            for leg in legs
            for address in leg[:2]
            if address.startswith("escrow:")
        }
        if any(self.escrows[t]["status"] != "open" for t in touched if t != reopened):
            with pytest.raises(EscrowAlreadyResolved):
                call()
            return
        if not self.affordable(legs):
            with pytest.raises(InsufficientCredits):
                call()
            return
        entry = call()
        self.move(legs)
        original["reversed"] = True
        self.record(entry, legs)
        self.entries[-1]["reason"] = "reversal"
        if reopened:
            self.escrows[reopened]["status"] = "open"
            self.resolutions -= 1
        self.expect_all(legs)

    @rule(person=st.integers(0, 2), credits=st.sampled_from([5_000, 20_000]), deliver=st.booleans())
    def purchase(self, person: int, credits: int, deliver: bool) -> None:
        owner = self.people[person]
        purchase = Purchase.objects.create(
            owner_ref=owner,
            kind="checkout",
            pack="test",
            credits=credits,
            amount_cents=credits // 10,
        )
        self.purchases[purchase.pk] = {
            "credits": credits,
            "cents": credits // 10,
            "refunded": 0,
            "paid": 0,
            "owner": owner,
            "event_sent": False,
        }
        if deliver:
            self._pay(purchase.pk)

    @precondition(lambda self: any(not p["event_sent"] for p in self.purchases.values()))
    @rule(pick=st.integers(0, 10_000))
    def deliver_payment_webhook(self, pick: int) -> None:
        waiting = sorted(pk for pk, p in self.purchases.items() if not p["event_sent"])
        self._pay(waiting[pick % len(waiting)])

    def _pay(self, purchase_id: int) -> None:
        event = {
            "id": f"evt_paid_{purchase_id}",
            "type": "payment_intent.succeeded",
            "created": 1_800_000_000,
            "data": {
                "object": {
                    "object": "payment_intent",
                    "id": f"pi_{purchase_id}",
                    "metadata": {"purchase_id": str(purchase_id)},
                }
            },
        }
        assert stripe_event_apply(event=event) == f"fulfilled purchase {purchase_id}"
        self.purchases[purchase_id]["event_sent"] = True
        self.events.append(event)
        self._model_pay(purchase_id)

    def _model_pay(self, purchase_id: int) -> None:
        purchase = self.purchases[purchase_id]
        if purchase["paid"]:
            return
        purchase["paid"] = 1
        wallet = f"wallet:{purchase['owner']}"
        self.move([("platform:stripe_clearing", wallet, purchase["credits"])])
        receivable = f"receivable:{purchase['owner']}"
        repay = min(-self.balance(receivable), self.balance(wallet))
        if repay > 0:
            self.move([(wallet, receivable, repay)])

    @precondition(lambda self: self.purchases)
    @rule(pick=st.integers(0, 10_000), percent=st.integers(1, 100))
    def stripe_refund(self, pick: int, percent: int) -> None:
        """``charge.refunded``: possibly before the payment's own webhook (out of order)."""
        purchase_id = sorted(self.purchases)[pick % len(self.purchases)]
        purchase = self.purchases[purchase_id]
        total = min(purchase["cents"], purchase["refunded"] + purchase["cents"] * percent // 100)
        event = {
            "id": f"evt_refund_{purchase_id}_{total}",
            "type": "charge.refunded",
            "created": 1_800_000_100,
            "data": {
                "object": {
                    "object": "charge",
                    "id": f"ch_{purchase_id}",
                    "metadata": {"purchase_id": str(purchase_id)},
                    "amount_refunded": total,
                }
            },
        }
        stripe_event_apply(event=event)
        self.events.append(event)
        self._model_pay(purchase_id)
        if total > purchase["refunded"]:
            credits = (purchase["credits"] * total // purchase["cents"]) - (
                purchase["credits"] * purchase["refunded"] // purchase["cents"]
            )
            wallet = f"wallet:{purchase['owner']}"
            from_wallet = min(credits, self.balance(wallet))
            self.move([(wallet, "platform:stripe_clearing", from_wallet)] if from_wallet else [])
            if credits - from_wallet:
                self.move(
                    [
                        (
                            f"receivable:{purchase['owner']}",
                            "platform:stripe_clearing",
                            credits - from_wallet,
                        )
                    ]
                )
            purchase["refunded"] = total

    @precondition(lambda self: self.events)
    @rule(pick=st.integers(0, 10_000))
    def duplicate_webhook(self, pick: int) -> None:
        event = self.events[pick % len(self.events)]
        assert stripe_event_apply(event=event) == "duplicate"

    @precondition(lambda self: self.requests)
    @rule(pick=st.integers(0, 10_000))
    def replay_request(self, pick: int) -> None:
        name, call, entry_id = self.requests[pick % len(self.requests)]
        assert getattr(services, name)(**call).pk == entry_id

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def books_match_the_model(self) -> None:
        report = reconcile()
        assert report.is_clean, report.lines()  # invariants 1, 2 and 3
        addresses = set(self.balances) | {f"wallet:{p}" for p in self.people}
        actual = dict(
            Account.objects.filter(address__in=addresses).values_list("address", "balance")
        )
        for address in addresses:
            assert actual.get(address, 0) == self.balance(address), address  # invariant 5
        for address in PLATFORM:
            moved = platform_balance(address) - self.platform_start[address]
            assert moved == self.platform[address], address

    @invariant()
    def each_escrow_resolved_at_most_once(self) -> None:
        tasks = list(self.escrows)
        resolutions = JournalEntry.objects.filter(
            domain_ref__in=tasks, reason__in=["escrow_settle", "escrow_refund", "escrow_split"]
        )
        unreversed = resolutions.filter(reversed_by__isnull=True).count()
        assert (
            unreversed
            == self.resolutions
            == sum(1 for escrow in self.escrows.values() if escrow["status"] != "open")
        )


@pytest.mark.django_db
def test_ledger_against_a_reference_model(settings_override: None) -> None:
    EXPECTED_ESCROWS.clear()
    LedgerMachine.TestCase.settings = settings(
        # LEDGER_STATEFUL_EXAMPLES=500 for a deeper hunt than the suite's default.
        max_examples=int(os.environ.get("LEDGER_STATEFUL_EXAMPLES", "25")),
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        report_multiple_bugs=False,
    )
    LedgerMachine.TestCase().runTest()


@pytest.fixture
def settings_override(settings: Any) -> None:
    settings.LEDGER_ESCROW_EXPECTATIONS = "tests.ledger.test_stateful.expected_escrows"
