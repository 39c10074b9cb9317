"""Writes of the ledger: the only way anything moves credits.

Every function is keyword-only, takes amounts as whole credits (``int > 0``) and an idempotency key,
and returns the :class:`~ledger.models.JournalEntry` it wrote, or the one the same key wrote first.

References
    A participant's wallet is named by the participant's reference (``participant:<id>``), a task's
    escrow by the task's (``task:<id>``). Where a service takes a *target* (``refund_to``, the parts
    of a split, the legs of a transfer), it is a wallet owner's reference, a task reference meaning
    that task's escrow, or a platform account (``platform:fees``).

Idempotency
    The same key with the same payload returns the first entry; with a different payload it raises
    :class:`IdempotencyConflict`; a debit that failed for want of funds is recorded and its key
    keeps failing with the same :class:`InsufficientCredits` (when the ledger owns the transaction:
    inside a caller's transaction the caller's rollback takes the record with it).

Concurrency
    Each posting is one call of the database function ``ledger_post`` (``ledger/sql.py``), which
    locks in a fixed order. Deadlocks and serialization failures are retried here when this call
    owns the transaction; inside a caller's transaction they raise :class:`LedgerBusy`. Neither is
    ever reported as insufficient credits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import current_app
from django.db import DatabaseError, OperationalError, connection, transaction

from ledger import metrics
from ledger.exceptions import (
    DebtOutstanding,
    EntryAlreadyReversed,
    EscrowAlreadyResolved,
    EscrowBalanceChanged,
    EscrowNotFound,
    IdempotencyConflict,
    InsufficientCredits,
    LedgerBusy,
    LedgerError,
    UnknownAccount,
)
from ledger.models import Account, AutoTopUp, Escrow, JournalEntry

Reason = JournalEntry.Reason
logger = logging.getLogger(__name__)

PLATFORM_FEES = "platform:fees"
# The platform fee account takes a leg of every settlement. As one row, its cached balance would be
# locked by each settlement until that settlement commits, and settlements would queue behind one
# another. It is kept as FEE_SUBACCOUNTS sub-accounts instead ("platform:fees/0" to "/7"), one
# picked at random for each posting; the fee account's balance is their sum (see
# ``selectors.account_for``), and a reversal returns credits to the sub-account they came from.
FEE_SUBACCOUNTS = 8
STRIPE_CLEARING = "platform:stripe_clearing"
PROMOTIONAL = "platform:promotional"
DISPUTE_HOLD = "platform:dispute_hold"

# The platform's accounts: (kind, may go negative). Only the dispute hold holds participants'
# money, so only it is guarded like a wallet.
PLATFORM_ACCOUNTS: dict[str, tuple[str, bool]] = {
    PLATFORM_FEES: (Account.Kind.PLATFORM_FEES, True),
    STRIPE_CLEARING: (Account.Kind.STRIPE_CLEARING, True),
    PROMOTIONAL: (Account.Kind.PROMOTIONAL, True),
    DISPUTE_HOLD: (Account.Kind.DISPUTE_HOLD, False),
}

MAX_ATTEMPTS = 8
TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


# --- Addresses ------------------------------------------------------------------------------------


def wallet_address(owner_ref: str) -> str:
    return f"wallet:{owner_ref}"


def escrow_address(task_ref: str) -> str:
    return f"escrow:{task_ref}"


def receivable_address(owner_ref: str) -> str:
    return f"receivable:{owner_ref}"


def fee_address() -> str:
    """One of the platform fee account's sub-accounts, at random (spreads the row locks)."""
    return f"{PLATFORM_FEES}/{random.randrange(FEE_SUBACCOUNTS)}"


def fee_addresses() -> list[str]:
    return [f"{PLATFORM_FEES}/{number}" for number in range(FEE_SUBACCOUNTS)]


def target_address(target: str) -> str:
    """The account a target names: a task's escrow, a platform account, or a wallet."""
    if target.startswith("task:"):
        return escrow_address(target)
    if target.startswith("platform:"):
        if target not in PLATFORM_ACCOUNTS:
            raise UnknownAccount(f"There is no platform account {target!r}.")
        return fee_address() if target == PLATFORM_FEES else target
    _check_ref(target, "target")
    return wallet_address(target)


def _check_ref(ref: str, name: str) -> None:
    if not isinstance(ref, str) or ":" not in ref or len(ref) > 120:
        raise LedgerError(f"{name} must be a reference like 'participant:7', got {ref!r}.")


def _check_amount(amount: int, name: str = "amount") -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise LedgerError(f"{name} must be a whole number of credits above zero, got {amount!r}.")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise LedgerError("An idempotency key of 1 to 200 characters is required.")


# --- Accounts -------------------------------------------------------------------------------------


def _account_spec(address: str) -> tuple[str, str, bool]:
    """(kind, owner_ref, may go negative) of an address the ledger opens on demand."""
    if address in fee_addresses():
        # One account per (kind, owner): each sub-account is its own owner.
        return Account.Kind.PLATFORM_FEES, f"platform/{address.rsplit('/', 1)[1]}", True
    if address in PLATFORM_ACCOUNTS:
        kind, may_go_negative = PLATFORM_ACCOUNTS[address]
        return kind, "platform", may_go_negative
    prefix, _, owner_ref = address.partition(":")
    if prefix == Account.Kind.WALLET:
        return Account.Kind.WALLET, owner_ref, False
    if prefix == Account.Kind.RECEIVABLE:
        return Account.Kind.RECEIVABLE, owner_ref, True
    if prefix == Account.Kind.ESCROW:
        raise EscrowNotFound(f"There is no escrow for {owner_ref}.")
    raise UnknownAccount(f"There is no account {address!r}.")


def _accounts_open(addresses: Sequence[str]) -> None:
    """Create the accounts that do not exist yet (idempotent, safe under concurrency)."""
    rows = [(address, *_account_spec(address)) for address in addresses]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO ledger_account (address, kind, owner_ref, may_go_negative, balance,"
            " created_at) VALUES (%s, %s, %s, %s, 0, now()) ON CONFLICT DO NOTHING",
            rows,
        )


def wallet_open(*, owner_ref: str) -> Account:
    """The wallet of ``owner_ref``, created on first call."""
    _check_ref(owner_ref, "owner_ref")
    address = wallet_address(owner_ref)
    account = Account.objects.filter(address=address).first()
    if account is None:
        _accounts_open([address])
        account = Account.objects.get(address=address)
    return account


def _escrow_open(*, task_ref: str, funder_ref: str, parent: Escrow | None) -> Escrow:
    address = escrow_address(task_ref)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_account (address, kind, owner_ref, may_go_negative, balance,"
            " created_at) VALUES (%s, %s, %s, false, 0, now()) ON CONFLICT DO NOTHING",
            [address, Account.Kind.ESCROW, task_ref],
        )
        cursor.execute(
            "INSERT INTO ledger_escrow (task_ref, account_id, funder_ref, parent_id, status,"
            " created_at) SELECT %s, id, %s, %s, 'open', now() FROM ledger_account"
            " WHERE address = %s ON CONFLICT DO NOTHING",
            [task_ref, funder_ref, parent.pk if parent else None, address],
        )
    escrow = Escrow.objects.get(task_ref=task_ref)
    if escrow.funder_ref != funder_ref or escrow.parent_id != (parent.pk if parent else None):
        raise LedgerError(
            f"The escrow of {task_ref} is funded by {escrow.funder_ref}"
            + (f" under {escrow.parent.task_ref}" if escrow.parent else "")
            + "; it cannot be funded from elsewhere."
        )
    return escrow


# --- Posting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """One transfer of a posting, between two account addresses."""

    debit: str
    credit: str
    amount: int


def _fingerprint(operation: str, payload: Mapping[str, Any]) -> str:
    body = json.dumps({"operation": operation, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _is_transient(error: DatabaseError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in TRANSIENT_SQLSTATES


_ENTRY_FIELDS = [field.attname for field in JournalEntry._meta.concrete_fields]


def _entry_from_result(result: dict[str, Any], **values: Any) -> JournalEntry:
    """The entry just written, without reading it back (the posting path is hot)."""
    values = {
        **values,
        "id": result["entry_id"],
        "created_at": datetime.fromisoformat(result["created_at"]),
        "occurred_at": datetime.fromisoformat(result["occurred_at"]),
    }
    return JournalEntry.from_db("default", _ENTRY_FIELDS, [values[f] for f in _ENTRY_FIELDS])


def _post(
    *,
    idempotency_key: str,
    operation: str,
    payload: Mapping[str, Any],
    reason: str,
    legs: Callable[[], Sequence[Leg]] | Sequence[Leg],
    domain_ref: str = "",
    memo: str = "",
    actor_ref: str = "",
    occurred_at: datetime | None = None,
    reverses_id: int | None = None,
    resolve_escrow: str | None = None,
    resolution: str | None = None,
    expected_escrow: Callable[[], int | None] | int | None = None,
    prepare: Callable[[], None] | None = None,
) -> JournalEntry:
    """Write one entry through ``ledger_post``, retrying transient failures when we may."""
    _check_key(idempotency_key)
    fingerprint = _fingerprint(operation, payload)
    owns_transaction = not connection.in_atomic_block
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            # When nobody else holds a transaction open, the posting is one statement in
            # autocommit: ``ledger_post`` does every write, so the statement *is* the transaction,
            # and the row locks (the platform fee account's above all) are released by the commit
            # that ends it, without waiting for another round trip from this process. ``prepare``
            # steps only open accounts and escrows idempotently or read.
            with transaction.atomic() if not owns_transaction else nullcontext():
                if prepare is not None:
                    prepare()
                outcome = _post_once(
                    key=idempotency_key,
                    fingerprint=fingerprint,
                    reason=reason,
                    legs=list(legs() if callable(legs) else legs),
                    domain_ref=domain_ref,
                    memo=memo,
                    actor_ref=actor_ref,
                    occurred_at=occurred_at,
                    reverses_id=reverses_id,
                    resolve_escrow=resolve_escrow,
                    resolution=resolution,
                    expected_escrow=(
                        expected_escrow() if callable(expected_escrow) else expected_escrow
                    ),
                )
            # Raised after the block, so that the record of the failed debit commits with it.
            if isinstance(outcome, InsufficientCredits):
                raise outcome
            return outcome
        except EscrowBalanceChanged:
            # Only a refund reads the balance it drains; it reads it again.
            if not callable(expected_escrow) or attempt == MAX_ATTEMPTS:
                raise
        except OperationalError as error:
            if not _is_transient(error):
                raise
            if not owns_transaction:
                raise LedgerBusy(
                    "The ledger was busy (a concurrent update); retry the request."
                ) from error
            if attempt == MAX_ATTEMPTS:
                raise LedgerBusy("The ledger stayed busy; retry the request.") from error
            logger.info(
                "ledger posting %s retried (attempt %s): %s", idempotency_key, attempt, error
            )
            time.sleep(random.uniform(0, 0.002 * 2**attempt))
    raise AssertionError("unreachable")


def _post_once(
    *,
    key: str,
    fingerprint: str,
    reason: str,
    legs: list[Leg],
    domain_ref: str,
    memo: str,
    actor_ref: str,
    occurred_at: datetime | None,
    reverses_id: int | None,
    resolve_escrow: str | None,
    resolution: str | None,
    expected_escrow: int | None,
) -> JournalEntry | InsufficientCredits:
    params = [
        key,
        fingerprint,
        reason,
        domain_ref,
        memo,
        actor_ref,
        occurred_at,
        reverses_id,
        [leg.debit for leg in legs],
        [leg.credit for leg in legs],
        [leg.amount for leg in legs],
        resolve_escrow,
        resolution,
        expected_escrow,
    ]
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute(
                "SELECT ledger_post(%s, %s, %s, %s, %s, %s, %s, %s, %s::text[], %s::text[],"
                " %s::bigint[], %s, %s, %s)",
                params,
            )
            result = cursor.fetchone()[0]
            if isinstance(result, str):
                result = json.loads(result)
            if result["status"] != "unknown_accounts":
                break
            _accounts_open(result["addresses"])
    status = result["status"]
    if status == "posted":
        return _entry_from_result(
            result,
            idempotency_key=key,
            fingerprint=fingerprint,
            reason=reason,
            domain_ref=domain_ref,
            memo=memo,
            actor_ref=actor_ref,
            reverses_id=reverses_id,
        )
    if status == "replayed":
        return JournalEntry.objects.get(pk=result["entry_id"])
    if status == "failed":
        detail = result["detail"]
        return InsufficientCredits(
            address=detail["address"], available=detail["available"], needed=detail["needed"]
        )
    if status == "conflict":
        raise IdempotencyConflict(key)
    if status == "no_escrow":
        raise EscrowNotFound(f"There is no escrow for {resolve_escrow}.")
    if status == "escrow_resolved":
        raise EscrowAlreadyResolved(
            f"The escrow of {resolve_escrow} is already resolved ({result['escrow_status']})."
        )
    if status == "other_escrow_resolved":
        raise EscrowAlreadyResolved(
            f"The escrow of {result['task_ref']} is already resolved ({result['escrow_status']});"
            " credits can no longer move into or out of it."
        )
    if status == "escrow_balance_changed":
        raise EscrowBalanceChanged(
            f"The escrow of {resolve_escrow} holds {result['balance']} credits,"
            f" not the {expected_escrow} this was computed for."
        )
    if status == "already_reversed":
        raise EntryAlreadyReversed(f"Entry #{reverses_id} is already reversed.")
    raise UnknownAccount(f"Unknown accounts: {', '.join(result.get('addresses', []))}.")


# --- Grants and transfers -------------------------------------------------------------------------


def promo_grant(
    *, owner_ref: str, amount: int, idempotency_key: str, memo: str = ""
) -> JournalEntry:
    """Promotional credits (starter credits, goodwill) from the platform's promotional account."""
    _check_ref(owner_ref, "owner_ref")
    _check_amount(amount)
    return _post(
        idempotency_key=idempotency_key,
        operation="promo_grant",
        payload={"owner_ref": owner_ref, "amount": amount, "memo": memo},
        reason=Reason.PROMO_GRANT,
        legs=[Leg(PROMOTIONAL, wallet_address(owner_ref), amount)],
        domain_ref=owner_ref,
        memo=memo,
    )


@dataclass(frozen=True)
class TransferLeg:
    """A leg of :func:`transfer_post` between two targets (wallet owner, task, platform)."""

    source: str
    destination: str
    amount: int


def transfer_post(
    *,
    legs: Sequence[TransferLeg],
    idempotency_key: str,
    reason: str = Reason.TRANSFER,
    domain_ref: str = "",
    memo: str = "",
    actor_ref: str = "",
) -> JournalEntry:
    """Move credits along one or many legs, all or none."""
    if not legs:
        raise LedgerError("A transfer needs at least one leg.")
    if reason not in Reason.values:
        raise LedgerError(f"Unknown reason {reason!r}.")
    for leg in legs:
        _check_amount(leg.amount)
    resolved = [
        Leg(target_address(leg.source), target_address(leg.destination), leg.amount) for leg in legs
    ]
    if any(leg.debit == leg.credit for leg in resolved):
        raise LedgerError("A leg cannot move credits from an account to itself.")
    spenders = sorted({leg.debit for leg in resolved if leg.debit.startswith("wallet:")})

    def prepare() -> None:
        for address in spenders:
            debt_check(owner_ref=address.removeprefix("wallet:"), idempotency_key=idempotency_key)

    return _post(
        idempotency_key=idempotency_key,
        operation="transfer",
        payload={
            "legs": [[leg.source, leg.destination, leg.amount] for leg in legs],
            "reason": reason,
            "domain_ref": domain_ref,
        },
        reason=reason,
        legs=resolved,
        domain_ref=domain_ref,
        memo=memo,
        actor_ref=actor_ref,
        prepare=prepare if spenders else None,
    )


# --- Escrow ---------------------------------------------------------------------------------------


def _signal_auto_topup_on_commit(owner_ref: str) -> None:
    """After a wallet paid out, let its automatic top-up (if any) look at the new balance.

    Sent by name so the task module (which imports this one) is not imported here.
    """
    if AutoTopUp.objects.filter(owner_ref=owner_ref, enabled=True).exists():
        transaction.on_commit(
            lambda: current_app.send_task(
                "ledger.tasks.auto_topup_check", kwargs={"owner_ref": owner_ref}
            )
        )


def debt_check(*, owner_ref: str, idempotency_key: str) -> None:
    """Refuse a spend from the wallet of ``owner_ref`` while it owes credits (a receivable left
    by a refund or chargeback of spent credits): a debt blocks spending until a purchase repays
    it. A replay of a spend made before the debt still answers with its entry. Read in the
    spend's transaction; a refund committed meanwhile books against what the spend left, as if
    the spend had come first."""
    balance = (
        Account.objects.filter(address=receivable_address(owner_ref))
        .values_list("balance", flat=True)
        .first()
    )
    if (
        balance is not None
        and balance < 0
        and not JournalEntry.objects.filter(idempotency_key=idempotency_key).exists()
    ):
        raise DebtOutstanding(owner_ref=owner_ref, owed=-balance)


def escrow_lock(
    *, task_ref: str, payer_ref: str, amount: int, idempotency_key: str
) -> JournalEntry:
    """Lock a bounty: wallet(payer) -> escrow(task). Opens the escrow and records its funder.
    Refused while the payer owes credits (:func:`debt_check`)."""
    _check_ref(task_ref, "task_ref")
    _check_ref(payer_ref, "payer_ref")
    _check_amount(amount)

    def prepare() -> None:
        debt_check(owner_ref=payer_ref, idempotency_key=idempotency_key)
        _escrow_open(task_ref=task_ref, funder_ref=payer_ref, parent=None)

    entry = _post(
        idempotency_key=idempotency_key,
        operation="escrow_lock",
        payload={"task_ref": task_ref, "payer_ref": payer_ref, "amount": amount},
        reason=Reason.ESCROW_LOCK,
        legs=[Leg(wallet_address(payer_ref), escrow_address(task_ref), amount)],
        domain_ref=task_ref,
        prepare=prepare,
    )
    _signal_auto_topup_on_commit(payer_ref)
    return entry


def escrow_delegate(
    *, parent_task_ref: str, child_task_ref: str, amount: int, idempotency_key: str
) -> JournalEntry:
    """Delegate budget to a subtask: escrow(parent) -> escrow(child). Not a resolution."""
    _check_ref(parent_task_ref, "parent_task_ref")
    _check_ref(child_task_ref, "child_task_ref")
    _check_amount(amount)
    if parent_task_ref == child_task_ref:
        raise LedgerError("A task cannot delegate to itself.")

    def prepare() -> None:
        parent = Escrow.objects.filter(task_ref=parent_task_ref).first()
        if parent is None:
            raise EscrowNotFound(f"There is no escrow for {parent_task_ref}.")
        _escrow_open(task_ref=child_task_ref, funder_ref=parent.funder_ref, parent=parent)

    return _post(
        idempotency_key=idempotency_key,
        operation="escrow_delegate",
        payload={"parent": parent_task_ref, "child": child_task_ref, "amount": amount},
        reason=Reason.ESCROW_DELEGATE,
        legs=[Leg(escrow_address(parent_task_ref), escrow_address(child_task_ref), amount)],
        domain_ref=child_task_ref,
        prepare=prepare,
    )


@dataclass(frozen=True)
class SettlementPlan:
    """How one escrow is paid out. ``escrow == assignee + fee + sum(royalties) + refund``."""

    escrow: int
    payout: int
    fee: int
    royalties: tuple[tuple[str, int], ...]
    assignee: int
    refund: int

    @property
    def royalty_total(self) -> int:
        return sum(amount for _, amount in self.royalties)


BASIS_POINTS = 10_000


def settlement_plan(
    *,
    escrow: int,
    payout: int,
    fee_basis_points: int,
    royalties: Sequence[tuple[str, int]],
    royalty_cap_basis_points: int,
) -> SettlementPlan:
    """The parts of a settlement, in whole credits, that sum exactly to ``escrow``.

    The rule (every division floors, and the assignee takes what flooring leaves):

    1. ``refund = escrow - payout`` goes back (to the poster, or the parent escrow);
    2. ``fee = floor(payout * fee_bp / 10000)`` goes to the platform;
    3. each royalty is ``floor(payout * bp_i / 10000)``; when they add up to more than
       ``cap = floor(payout * cap_bp / 10000)`` (or than what the fee leaves), each is scaled to
       ``floor(royalty_i * cap / total)``, so their sum never exceeds the cap;
    4. ``assignee = payout - fee - royalties``: rounding dust always goes to the worker.
    """
    for name, value in (("escrow", escrow), ("payout", payout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LedgerError(f"{name} must be a whole number of credits, got {value!r}.")
    if payout > escrow:
        raise LedgerError(f"The payout ({payout}) cannot exceed the escrow ({escrow}).")
    for name, bp in (("fee", fee_basis_points), ("royalty cap", royalty_cap_basis_points)):
        if not 0 <= bp <= BASIS_POINTS:
            raise LedgerError(f"The {name} must be between 0 and 10000 basis points, got {bp}.")
    for owner_ref, bp in royalties:
        _check_ref(owner_ref, "royalty owner")
        if not 0 <= bp <= BASIS_POINTS:
            raise LedgerError(f"A royalty must be between 0 and 10000 basis points, got {bp}.")

    fee = payout * fee_basis_points // BASIS_POINTS
    raw = [(owner_ref, payout * bp // BASIS_POINTS) for owner_ref, bp in royalties]
    cap = min(payout * royalty_cap_basis_points // BASIS_POINTS, payout - fee)
    total = sum(amount for _, amount in raw)
    if total > cap:
        raw = [(owner_ref, amount * cap // total) for owner_ref, amount in raw]
    kept = tuple((owner_ref, amount) for owner_ref, amount in raw if amount > 0)
    assignee = payout - fee - sum(amount for _, amount in kept)
    return SettlementPlan(
        escrow=escrow,
        payout=payout,
        fee=fee,
        royalties=kept,
        assignee=assignee,
        refund=escrow - payout,
    )


def _plan_is_consistent(plan: SettlementPlan) -> bool:
    parts = [plan.fee, plan.assignee, plan.refund, *(amount for _, amount in plan.royalties)]
    return all(part >= 0 for part in parts) and sum(parts) == plan.escrow


def settlement_memo(plan: SettlementPlan) -> str:
    """Every part of a settlement in words, so each party's statement line explains itself."""
    parts = [f"{plan.assignee:,} to the assignee", f"{plan.fee:,} platform fee"]
    if plan.royalty_total:
        parts.append(f"{plan.royalty_total:,} royalties")
    memo = f"price {plan.payout:,} = {' + '.join(parts)}"
    return memo + (f"; {plan.refund:,} of the bounty back" if plan.refund else "")


def escrow_settle(
    *,
    task_ref: str,
    payee_ref: str,
    refund_to: str,
    plan: SettlementPlan,
    idempotency_key: str,
) -> JournalEntry:
    """Pay out an escrow by ``plan``: assignee, platform fee, royalties, remainder back."""
    _check_ref(task_ref, "task_ref")
    _check_ref(payee_ref, "payee_ref")
    if not _plan_is_consistent(plan):
        raise LedgerError("The settlement plan's parts do not sum to its escrow.")
    source = escrow_address(task_ref)
    legs = [
        Leg(source, wallet_address(payee_ref), plan.assignee),
        Leg(source, fee_address(), plan.fee),
        *(Leg(source, wallet_address(owner_ref), amount) for owner_ref, amount in plan.royalties),
        Leg(source, target_address(refund_to), plan.refund),
    ]
    entry = _post(
        idempotency_key=idempotency_key,
        operation="escrow_settle",
        payload={
            "task_ref": task_ref,
            "payee_ref": payee_ref,
            "refund_to": refund_to,
            "plan": [plan.escrow, plan.payout, plan.fee, plan.assignee, plan.refund],
            "royalties": [list(item) for item in plan.royalties],
        },
        reason=Reason.ESCROW_SETTLE,
        legs=[leg for leg in legs if leg.amount > 0],
        domain_ref=task_ref,
        memo=settlement_memo(plan),
        resolve_escrow=task_ref,
        resolution=Escrow.Status.SETTLED,
        expected_escrow=plan.escrow,
    )
    transaction.on_commit(lambda: metrics.settlement_committed(plan.escrow))
    return entry


def _escrow_balance_now(task_ref: str) -> int:
    balance = (
        Account.objects.filter(address=escrow_address(task_ref))
        .values_list("balance", flat=True)
        .first()
    )
    if balance is None:
        raise EscrowNotFound(f"There is no escrow for {task_ref}.")
    return balance


def escrow_refund(*, task_ref: str, refund_to: str, idempotency_key: str) -> JournalEntry:
    """Return the whole remaining escrow to ``refund_to`` (cancel, expiry)."""
    _check_ref(task_ref, "task_ref")
    target = target_address(refund_to)
    balances: list[int] = []

    def read_balance() -> None:
        balances.append(_escrow_balance_now(task_ref))

    def legs() -> list[Leg]:
        amount = balances[-1]
        return [Leg(escrow_address(task_ref), target, amount)] if amount > 0 else []

    return _post(
        idempotency_key=idempotency_key,
        operation="escrow_refund",
        payload={"task_ref": task_ref, "refund_to": refund_to},
        reason=Reason.ESCROW_REFUND,
        prepare=read_balance,
        legs=legs,
        domain_ref=task_ref,
        resolve_escrow=task_ref,
        resolution=Escrow.Status.REFUNDED,
        expected_escrow=lambda: balances[-1],
    )


def escrow_split(
    *, task_ref: str, parts: Mapping[str, int], idempotency_key: str, memo: str = ""
) -> JournalEntry:
    """Resolve a disputed escrow: every part explicit; the parts must sum to the escrow."""
    _check_ref(task_ref, "task_ref")
    if not parts:
        raise LedgerError("A split needs at least one part.")
    for target, amount in parts.items():
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise LedgerError(f"The part of {target} must be a whole number of credits.")
    source = escrow_address(task_ref)
    legs = [Leg(source, target_address(t), amount) for t, amount in parts.items() if amount > 0]
    return _post(
        idempotency_key=idempotency_key,
        operation="escrow_split",
        payload={"task_ref": task_ref, "parts": dict(parts), "memo": memo},
        reason=Reason.ESCROW_SPLIT,
        legs=legs,
        domain_ref=task_ref,
        memo=memo,
        resolve_escrow=task_ref,
        resolution=Escrow.Status.SPLIT,
        expected_escrow=sum(parts.values()),
    )


# --- Corrections ----------------------------------------------------------------------------------


def entry_reverse(
    *, entry_id: int, reason: str, actor_ref: str, idempotency_key: str
) -> JournalEntry:
    """Post the mirror image of an entry; the reason and who asked are recorded on it.

    Reversing the entry that resolved an escrow reopens that escrow. The accounts that received
    credits must still hold them (a wallet is never driven negative).
    """
    if not reason.strip():
        raise LedgerError("A reversal needs a reason.")
    _check_ref(actor_ref, "actor_ref")
    original = JournalEntry.objects.filter(pk=entry_id).first()
    if original is None:
        raise LedgerError(f"There is no entry #{entry_id}.")
    if original.reason == Reason.REVERSAL:
        raise LedgerError("A reversal cannot itself be reversed; post a new entry instead.")
    transfers = list(
        original.transfers.select_related("debit_account", "credit_account").order_by("id")
    )
    if not transfers:
        raise LedgerError(f"Entry #{entry_id} moved no credits; there is nothing to reverse.")
    return _post(
        idempotency_key=idempotency_key,
        operation="entry_reverse",
        payload={"entry_id": entry_id, "reason": reason, "actor_ref": actor_ref},
        reason=Reason.REVERSAL,
        legs=[Leg(t.credit_account.address, t.debit_account.address, t.amount) for t in transfers],
        domain_ref=original.domain_ref,
        memo=reason,
        actor_ref=actor_ref,
        reverses_id=original.pk,
    )
