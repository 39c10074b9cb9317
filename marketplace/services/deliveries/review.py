"""The poster's review: revisions, and the end of the review window (silence accepts, failed
checks go back for a revision)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents_registry.models import Participant
from agents_registry.sweeps import sweep
from marketplace import selectors
from marketplace.models import Delivery, Task
from marketplace.services import validation
from marketplace.services.common import (
    notify,
    revision_handler_call,
    task_lock,
    transition_record,
)
from marketplace.services.deliveries.checks import delivery_verify_run
from marketplace.services.deliveries.settlement import _locked_for_review, _settle
from marketplace.services.outcomes import outcome_record_for


def _checks_message(delivery: Delivery) -> str:
    failed = [result for result in delivery.check_results if result.get("passed") is False]
    details = "; ".join(f"{result['check']}: {result['evidence']}" for result in failed)
    return f"The machine checks failed ({details or 'see the check results'}). Please revise."[
        :5000
    ]


def delivery_review_window_end(*, delivery_id: int, now: datetime | None = None) -> str | None:
    """What silence does once a delivery's review window ends: a delivery whose checks passed
    (or that has none) is accepted; one whose checks failed is never paid by silence: it goes
    back to the assignee as a revision (a hosted agent runs again), at most
    ``MARKET_AUTOMATIC_REVISIONS`` times per task, and after that it waits for the poster, with
    no deadline. Checks still pending (their message was lost) run here first.

    Returns ``"accepted"``, ``"revision"`` or ``"awaiting_poster"``, or None when the delivery
    is not due. Safe to run twice at once: the second waits for the task's row lock and then
    finds the delivery handled."""
    now = now or timezone.now()
    pending = Delivery.objects.filter(
        pk=delivery_id, check_status=Delivery.CheckStatus.PENDING
    ).exists()
    if pending:
        delivery_verify_run(delivery_id=delivery_id)
    with transaction.atomic():
        delivery = Delivery.objects.filter(pk=delivery_id).first()
        if delivery is None:
            return None
        task = task_lock(delivery.task_id)
        delivery.refresh_from_db()
        if (
            delivery.status != Delivery.Status.SUBMITTED
            or task.state != Task.State.DELIVERED
            or delivery.review_deadline is None
            or delivery.review_deadline > now
            or delivery.check_status == Delivery.CheckStatus.PENDING
        ):
            return None
        if delivery.check_status != Delivery.CheckStatus.FAILED:
            _settle(task=task, delivery=delivery, actor=None)
            return "accepted"
        if selectors.automatic_revisions_count(task=task) < settings.MARKET_AUTOMATIC_REVISIONS:
            _revision_locked(task, delivery, actor=None, message=_checks_message(delivery))
            return "revision"
        Delivery.objects.filter(pk=delivery.pk).update(review_deadline=None)
        transition_record(
            task,
            kind="review_awaited",
            state=None,
            notified=task.poster,
            notice=(
                f"The delivery for “{task.title}” failed its checks again; it waits for your "
                "decision: accept, request a revision or reject it."
            ),
            delivery=delivery.pk,
        )
        notify(
            recipient=task.assignee,
            task=task,
            message=f"Your delivery for “{task.title}” failed its checks again and now waits "
            "for the poster; you may escalate it to staff.",
        )
        return "awaiting_poster"


def deliveries_review_due() -> int:
    """Beat: every delivery whose review window ended (see :func:`delivery_review_window_end`);
    how many it moved. One that fails is logged and left for the next round; the rest go on."""
    due = Delivery.objects.filter(
        status=Delivery.Status.SUBMITTED, review_deadline__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(
        outcome is not None
        for outcome in sweep(
            list(due), lambda pk: delivery_review_window_end(delivery_id=pk), what="delivery"
        )
    )


def revision_request(*, delivery: Delivery, actor: Participant, message: str) -> Task:
    """The poster asks for changes; the assignee works again (a hosted agent runs again with
    ``message``: the revision hook)."""
    message = validation.clean_text(message, field="message", maximum=validation.MAX_REVIEW_TEXT)
    with transaction.atomic():
        task = _locked_for_review(delivery, actor, "request a revision", rule="revise")
        _revision_locked(task, delivery, actor=actor, message=message)
        return task


def _revision_locked(
    task: Task, delivery: Delivery, *, actor: Participant | None, message: str
) -> None:
    """The delivery goes back to the locked ``task``'s assignee; ``actor`` None: its checks
    failed and the review window ended."""
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.REVISION_REQUESTED,
        review_message=message,
        reviewed_at=timezone.now(),
    )
    outcome_record_for(task=task, outcome="revised")
    automatic: dict[str, Any] = {"automatic": True} if actor is None else {}
    transition_record(
        task,
        kind="revision_requested",
        state=Task.State.REVISION_REQUESTED,
        actor=actor,
        notified=task.assignee,
        notice=f"A revision of “{task.title}” was requested: {message}",
        message=message,
        **automatic,
    )
    if actor is None:
        notify(
            recipient=task.poster,
            task=task,
            message=f"The delivery for “{task.title}” failed its checks; it went back to the "
            "assignee for a revision.",
        )
    revision_handler_call(task=task, delivery_id=delivery.pk, message=message)
