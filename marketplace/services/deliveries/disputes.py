"""Rejections, escalations of stalled work, evidence and staff resolution of disputes."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from agents_registry.models import Participant
from ledger import selectors as ledger_selectors
from ledger import services as ledger_services
from marketplace import selectors
from marketplace.actions import states_of, work_stalls_at
from marketplace.exceptions import (
    ChildrenOpen,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
)
from marketplace.models import Delivery, Dispute, StaffAction, Task
from marketplace.services import validation
from marketplace.services.common import (
    agent_load_change,
    notify,
    require_state,
    task_lock,
    transition_record,
)
from marketplace.services.deliveries.settlement import _locked_for_review
from marketplace.services.outcomes import outcome_record_for


def delivery_reject(*, delivery: Delivery, actor: Participant, reason: str) -> Dispute:
    """The poster rejects the work; a dispute opens, and the escrow waits for staff."""
    reason = validation.clean_text(reason, field="reason", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "reject this delivery", rule="reject")
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.REJECTED, review_message=reason, reviewed_at=timezone.now()
        )
        dispute = Dispute.objects.create(
            task=task, delivery=delivery, opened_by=actor, poster_evidence=reason
        )
        transition_record(
            task,
            kind="rejected",
            state=Task.State.DISPUTED,
            actor=actor,
            notified=task.assignee,
            notice=f"Your delivery for “{task.title}” was rejected; add your side to the dispute.",
            reason=reason,
            dispute=dispute.pk,
        )
        outcome_record_for(task=task, outcome="rejected")
        return dispute


def task_escalate(*, task: Task, actor: Participant, reason: str) -> Dispute:
    """Stuck work goes to staff as a dispute over its latest delivery; the escrow waits for
    their split. The poster may escalate work that stalled (see ``actions.work_stalls_at``)
    after something was delivered (with nothing delivered, cancelling refunds it all); the
    assignee, a delivery that waits for a poster who has not decided (its checks failed too
    often for silence to send it back)."""
    reason = validation.clean_text(reason, field="reason", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = task_lock(task.pk)
        delivery = Delivery.objects.filter(task=task).order_by("-created_at", "-pk").first()
        if actor.pk == task.poster_id:
            require_state(task, "escalate", *states_of("escalate", "poster"))
            if delivery is None:
                raise InvalidTransition(
                    "Nothing was delivered on this task yet: cancel it to get the escrow back."
                )
            stalls_at = work_stalls_at(task)
            assert stalls_at is not None  # the task is being worked on
            if stalls_at > timezone.now():
                raise InvalidTransition(
                    "The work has not stalled: this task can be escalated from "
                    f"{stalls_at:%Y-%m-%d %H:%M} UTC if nothing is delivered by then."
                )
            if selectors.unfinished_children_count(task=task):
                raise ChildrenOpen("Cancel or finish the subtasks of this task first.")
            other, sides = task.assignee, {"poster_evidence": reason}
            outcome_record_for(task=task, outcome="timed_out")
        elif actor.pk == task.assignee_id:
            require_state(task, "escalate", *states_of("escalate", "assignee"))
            assert delivery is not None  # a delivered task has its delivery
            if delivery.status != Delivery.Status.SUBMITTED or delivery.review_deadline:
                raise InvalidTransition(
                    "The poster's review window is still open: silence until it ends settles "
                    "this delivery."
                )
            other, sides = task.poster, {"poster_evidence": "", "assignee_evidence": reason}
        else:
            raise NotAllowed("Only the poster or the assignee can escalate this task.")
        state_before = task.state
        dispute = Dispute.objects.create(task=task, delivery=delivery, opened_by=actor, **sides)
        transition_record(
            task,
            kind="escalated",
            state=Task.State.DISPUTED,
            actor=actor,
            notified=other,
            notice=f"“{task.title}” was escalated to staff: {reason} Add your side to the dispute.",
            reason=reason,
            dispute=dispute.pk,
            was=state_before,
        )
        return dispute


def dispute_evidence_add(*, dispute: Dispute, actor: Participant, text: str) -> Dispute:
    """A party states its side (replacing what it said before): the assignee's answer, or the
    poster's (which starts as the rejection reason). A party that is an agent has its side told
    by the agent or by the human who owns it."""
    text = validation.clean_text(text, field="text", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = task_lock(dispute.task_id)
        viewer = selectors.Viewer(participant=actor)
        if selectors.speaks_for(viewer, task.poster):
            side = "poster_evidence"
        elif selectors.speaks_for(viewer, task.assignee):
            side = "assignee_evidence"
        else:
            raise NotAllowed("Only the poster or the assignee can add evidence to this dispute.")
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            raise InvalidTransition("This dispute is resolved already.")
        setattr(dispute, side, text)
        dispute.save(update_fields=[side])
        transition_record(
            task,
            kind="dispute_evidence",
            state=None,
            actor=actor,
            notified=task.assignee if side == "poster_evidence" else task.poster,
            notice=f"The other party added its side to the dispute on “{task.title}”.",
        )
        return dispute


def dispute_resolve(
    *, dispute: Dispute, staff_user: User, assignee_share: int, note: str = ""
) -> Dispute:
    """Staff split the escrow: ``assignee_share`` to the assignee (at most what acceptance would
    have paid), the rest back to the poster (or the parent's escrow). No fee on disputed work."""
    if not getattr(staff_user, "is_staff", False):
        raise NotAllowed("Only staff can resolve disputes.")
    if (
        isinstance(assignee_share, bool)
        or not isinstance(assignee_share, int)
        or assignee_share < 0
    ):
        raise InvalidInput("assignee_share must be a whole number of credits, zero or more.")
    note = validation.clean_text(note, field="note", maximum=5000, required=False)
    with transaction.atomic():
        task = task_lock(dispute.task_id)
        dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
        if dispute.status != Dispute.Status.OPEN:
            raise InvalidTransition("This dispute is resolved already.")
        require_state(task, "resolve a dispute on", *states_of("resolve"))
        escrow = ledger_selectors.escrow_balance(task_ref=task.ledger_ref)
        most = selectors.most_to_assignee(task=task, escrow=escrow)
        if assignee_share > most:
            raise InvalidInput(
                f"assignee_share must be at most {most} (the price less what subtasks spent)."
            )
        refund = escrow - assignee_share
        assert task.assignee is not None  # past open: constraint task_assigned_when_past_open
        parts = {task.assignee.ledger_ref: assignee_share, task.refund_ref: refund}
        ledger_services.escrow_split(
            task_ref=task.ledger_ref,
            parts={ref: amount for ref, amount in parts.items() if amount > 0},
            idempotency_key=f"{task.ledger_ref}:resolve",
            memo=note or f"dispute {dispute.pk} resolved",
        )
        now = timezone.now()
        dispute.status = Dispute.Status.RESOLVED
        dispute.assignee_share = assignee_share
        dispute.refund_share = refund
        dispute.resolution_note = note
        dispute.resolved_by = staff_user
        dispute.resolved_at = now
        dispute.save()
        task.spent = task.bounty - refund
        message = (
            f"The dispute on “{task.title}” was resolved: {assignee_share} to the assignee, "
            f"{refund} refunded."
        )
        transition_record(
            task,
            kind="resolved",
            state=Task.State.RESOLVED,
            update_fields=("spent",),
            notified=task.poster,
            notice=message,
            assignee_share=assignee_share,
            refund=refund,
        )
        notify(recipient=task.assignee, task=task, message=message)
        agent_load_change(participant=task.assignee, delta=-1)
        StaffAction.objects.create(
            staff_user=staff_user,
            action="dispute_resolve",
            subject=task.ledger_ref,
            note=note,
            data={"assignee_share": assignee_share, "refund": refund},
        )
        return dispute
