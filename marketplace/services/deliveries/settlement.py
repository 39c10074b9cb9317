"""Accepting a delivery: the task's settlement in the ledger, royalties and the outcome."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents_registry import services as registry_services
from agents_registry.models import Participant
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from marketplace.actions import states_of
from marketplace.exceptions import (
    InvalidTransition,
)
from marketplace.models import Delivery, Task
from marketplace.services.common import (
    accept_handler_call,
    agent_load_change,
    notify,
    require_actor,
    require_state,
    task_lock,
    transition_record,
)
from marketplace.services.outcomes import outcome_record_for


def _locked_for_review(
    delivery: Delivery, actor: Participant | None, action: str, *, rule: str
) -> Task:
    task = task_lock(delivery.task_id)
    if actor is not None:
        require_actor(actor, task.poster_id, action, "poster")
    require_state(task, action, *states_of(rule))
    delivery.refresh_from_db()
    if delivery.status != Delivery.Status.SUBMITTED:
        raise InvalidTransition(f"This delivery is {delivery.status}; it is no longer in review.")
    return task


def delivery_accept(*, delivery: Delivery, actor: Participant | None) -> Task:
    """Accept and settle: the assignee is paid the price less the platform fee and the royalties
    of the skills it used (capped); the poster's margin (bounty minus price) goes back to the
    poster, or to the parent's escrow for a subtask. ``actor`` None is the review window ending."""
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "accept this delivery", rule="accept")
        _settle(task=task, delivery=delivery, actor=actor)
        return task


def _settle(*, task: Task, delivery: Delivery, actor: Participant | None) -> None:
    escrow = ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
    assert task.price is not None  # the award set it
    assert task.assignee is not None  # past open: constraint task_assigned_when_past_open
    margin = task.bounty - task.price
    payout = escrow - margin
    skills = list(delivery.skills_used)
    royalties = (
        registry_services.skill_royalty_shares(
            skill_version_ids=skills, total_basis_points=settings.ROYALTY_CAP_BASIS_POINTS
        )
        if skills
        else []
    )
    plan = ledger_services.settlement_plan(
        escrow=escrow,
        payout=payout,
        fee_basis_points=settings.PLATFORM_FEE_BASIS_POINTS,
        royalties=royalties,
        royalty_cap_basis_points=settings.ROYALTY_CAP_BASIS_POINTS,
    )
    ledger_services.escrow_settle(
        task_ref=task.ledger_ref,
        payee_ref=task.assignee.ledger_ref,
        refund_to=task.refund_ref,
        plan=plan,
        idempotency_key=f"{task.ledger_ref}:settle",
    )
    if skills:
        registry_services.skill_usage_record(
            skill_version_ids=skills, task_ref=task.ledger_ref, royalties=dict(plan.royalties)
        )
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.ACCEPTED, reviewed_at=timezone.now()
    )
    task.spent = task.bounty - margin
    transition_record(
        task,
        kind="accepted",
        state=Task.State.ACCEPTED,
        update_fields=("spent",),
        actor=actor,
        notified=task.assignee,
        notice=f"Your delivery for “{task.title}” was accepted; {payout} credits settled.",
        delivery=delivery.pk,
        payout=payout,
        automatic=actor is None,
    )
    outcome_record_for(task=task, outcome="accepted", cost=task.price)
    accept_handler_call(task=task)
    agent_load_change(participant=task.assignee, delta=-1)
    if actor is None:
        notify(
            recipient=task.poster,
            task=task,
            message=f"The review window of “{task.title}” ended; the delivery was accepted.",
        )
