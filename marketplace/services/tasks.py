"""Posting, subtasks and their DAG, starting, abandoning, cancelling and expiring tasks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents_registry import embeddings
from agents_registry.models import Participant
from agents_registry.sweeps import sweep
from core.prepared import violated_constraint
from ledger import services as ledger_services
from ledger.exceptions import DebtOutstanding, InsufficientCredits
from marketplace import selectors
from marketplace.actions import WORKING, states_of, work_stalls_at
from marketplace.exceptions import (
    ChildrenOpen,
    DependencyCycle,
    IdempotencyConflict,
    InsufficientBudget,
    InvalidInput,
    InvalidTransition,
    NotAllowed,
)
from marketplace.models import Bid, Task, TaskDependency
from marketplace.services import validation
from marketplace.services.common import (
    agent_load_change,
    notify,
    post_handler_call,
    require_active_agent,
    require_actor,
    require_state,
    task_lock,
    transition_record,
)
from marketplace.services.outcomes import outcome_record_for


def task_embedding_text(*, title: str, description: str, acceptance_criteria: str = "") -> str:
    return f"{title}\n{description}\n{acceptance_criteria}".strip()


def _dependencies_check(*, parent: Task | None, poster: Participant, depends_on: Sequence[Task]):
    for dependency in depends_on:
        if dependency.parent_id != (parent.pk if parent else None):
            raise InvalidInput(
                f"Task #{dependency.pk} is not a sibling: dependencies link subtasks of one parent."
            )
        if parent is None and dependency.poster_id != poster.pk:
            raise InvalidInput(f"Task #{dependency.pk} is not yours to depend on.")


def task_post(
    *,
    poster: Participant,
    title: str,
    description: str,
    acceptance_criteria: str = "",
    checks: dict | None = None,
    bounty: int,
    deadline: datetime | None = None,
    visibility: str | None = None,
    internal: bool = False,
    parent: Task | None = None,
    depends_on: Sequence[Task] = (),
    auto_award: dict | None = None,
    idempotency_key: str | None = None,
    draft: bool = False,
) -> Task:
    """Post a task and lock its bounty in escrow, in one transaction: from the poster's wallet, or
    for a subtask (``parent`` given, posted by the parent's assignee) from the parent's escrow.
    Insufficient credits creates nothing. A replay with the same ``idempotency_key`` returns the
    first task. A ``draft`` is saved unfunded and seen only by its poster until
    :func:`task_publish`. ``visibility`` defaults to public, and to private for ``internal`` work
    (an owner's own agents take it): private and internal are one (only the poster's family sees
    a private task, and only its family may take internal work)."""
    title = validation.clean_text(title, field="title", maximum=validation.MAX_TITLE)
    description = validation.clean_text(
        description, field="description", maximum=validation.MAX_DESCRIPTION
    )
    acceptance_criteria = validation.clean_text(
        acceptance_criteria,
        field="acceptance_criteria",
        maximum=validation.MAX_DESCRIPTION,
        required=False,
    )
    bounty = validation.clean_positive_int(bounty, field="bounty", maximum=validation.MAX_BOUNTY)
    deadline = validation.clean_deadline(deadline)
    if visibility is None:
        visibility = Task.Visibility.PRIVATE if internal else Task.Visibility.PUBLIC
    if visibility not in Task.Visibility.values:
        raise InvalidInput(f"visibility must be one of {', '.join(Task.Visibility.values)}.")
    if internal and visibility != Task.Visibility.PRIVATE:
        raise InvalidInput(
            "An internal task is private to your own agents: leave visibility out or make it"
            " private."
        )
    # Only the poster's family sees a private task, so it is their work: internal.
    internal = visibility == Task.Visibility.PRIVATE
    checks = validation.clean_checks(checks)
    auto_award = validation.clean_auto_award(auto_award)
    depends_on = list(depends_on)
    if idempotency_key is not None:
        idempotency_key = validation.clean_text(
            idempotency_key, field="idempotency_key", maximum=120
        )
        existing = Task.objects.filter(poster=poster, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replayed(existing, title=title, bounty=bounty, parent=parent)
    require_active_agent(poster)
    _dependencies_check(parent=parent, poster=poster, depends_on=depends_on)

    # Embedding is slow next to a lock: compute it before the transaction opens.
    vector = embeddings.embed_text(
        task_embedding_text(
            title=title, description=description, acceptance_criteria=acceptance_criteria
        )
    )
    try:
        with transaction.atomic():
            if parent is not None:
                parent = task_lock(parent.pk)
                require_actor(poster, parent.assignee_id, "post subtasks of this task", "assignee")
                require_state(parent, "post subtasks of", *states_of("subtask"))
                capacity = selectors.task_delegation_capacity(task=parent)
                if bounty > capacity:
                    raise InsufficientBudget(
                        f"Task #{parent.pk} can delegate at most {capacity} more credits "
                        f"(its price minus what its subtasks already hold or spent); "
                        f"this subtask asks {bounty}."
                    )
            task = Task.objects.create(
                poster=poster,
                state=Task.State.DRAFT if draft else Task.State.OPEN,
                parent=parent,
                title=title,
                description=description,
                acceptance_criteria=acceptance_criteria,
                checks=checks,
                bounty=bounty,
                deadline=deadline,
                visibility=visibility,
                internal=bool(internal),
                auto_award=auto_award,
                bidding_closes_at=(
                    timezone.now() + timedelta(hours=auto_award["window_hours"])
                    if "window_hours" in auto_award
                    else None
                ),
                idempotency_key=idempotency_key,
                embedding=vector,
                embedding_model=embeddings.embedding_model_id(),
            )
            TaskDependency.objects.bulk_create(
                [TaskDependency(task=task, depends_on=dependency) for dependency in depends_on]
            )
            if draft:
                transition_record(task, kind="drafted", state=None, actor=poster, bounty=bounty)
                return task
            _fund(task=task, poster=poster)
            transition_record(task, kind="posted", state=None, actor=poster, bounty=bounty)
            post_handler_call(task=task)
            return task
    except IntegrityError as error:
        # Two requests with one idempotency key raced: the loser returns the winner's task.
        if violated_constraint(error) != "task_unique_idempotency_key":
            raise
        existing = Task.objects.filter(poster=poster, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _replayed(existing, title=title, bounty=bounty, parent=parent)


def _fund(*, task: Task, poster: Participant) -> None:
    """Lock the bounty in the task's escrow (the caller holds the transaction)."""
    if task.parent is not None:
        ledger_services.escrow_delegate(
            parent_task_ref=task.parent.ledger_ref,
            child_task_ref=task.ledger_ref,
            amount=task.bounty,
            idempotency_key=f"{task.ledger_ref}:post",
        )
        transition_record(
            task.parent, kind="subtask_posted", state=None, actor=poster, subtask=task.pk
        )
    else:
        try:
            ledger_services.escrow_lock(
                task_ref=task.ledger_ref,
                payer_ref=poster.ledger_ref,
                amount=task.bounty,
                idempotency_key=f"{task.ledger_ref}:post",
            )
        except DebtOutstanding as error:
            raise InsufficientBudget(str(error)) from error
        except InsufficientCredits as error:
            raise InsufficientBudget(
                f"Your wallet has {error.available} credits available; a bounty of "
                f"{task.bounty} needs {error.needed}. Lower the bounty or buy credits."
            ) from error


def task_publish(*, task: Task, actor: Participant) -> Task:
    """The poster funds a draft and opens it for bids (the same checks as posting it)."""
    with transaction.atomic():
        task = task_lock(task.pk)
        require_actor(actor, task.poster_id, "publish this task", "poster")
        require_state(task, "publish", *states_of("publish"))
        if task.parent_id is not None:
            parent = task_lock(task.parent_id)
            require_state(parent, "post subtasks of", Task.State.IN_PROGRESS)
            capacity = selectors.task_delegation_capacity(task=parent)
            if task.bounty > capacity:
                raise InsufficientBudget(
                    f"Task #{parent.pk} can delegate at most {capacity} more credits; this "
                    f"subtask asks {task.bounty}."
                )
        _fund(task=task, poster=actor)
        transition_record(
            task, kind="posted", state=Task.State.OPEN, actor=actor, bounty=task.bounty
        )
        post_handler_call(task=task)
        return task


def _replayed(existing: Task, *, title: str, bounty: int, parent: Task | None) -> Task:
    if (
        existing.title != title
        or existing.bounty != bounty
        or existing.parent_id != (parent.pk if parent else None)
    ):
        raise IdempotencyConflict(
            "This idempotency key was used for a different task; use a new key for new work."
        )
    return existing


def task_dependency_add(*, task: Task, depends_on: Task, actor: Participant) -> None:
    """Add a DAG edge between siblings; an edge that closes a cycle is refused."""
    with transaction.atomic():
        locked = task_lock(task.pk)
        require_actor(actor, locked.poster_id, "change this task's dependencies", "poster")
        require_state(locked, "add dependencies to", *states_of("depend"))
        _dependencies_check(parent=locked.parent, poster=actor, depends_on=[depends_on])
        if depends_on.pk == locked.pk:
            raise DependencyCycle("A task cannot depend on itself.")
        # Walk what ``depends_on`` already needs: reaching ``task`` means the new edge closes
        # a cycle. Siblings are few, so a walk over one parent's edges is cheap.
        edges: dict[int, set[int]] = {}
        for source, target in TaskDependency.objects.filter(
            task__parent_id=locked.parent_id, task__poster_id=locked.poster_id
        ).values_list("task_id", "depends_on_id"):
            edges.setdefault(source, set()).add(target)
        stack, seen = [depends_on.pk], set()
        while stack:
            current = stack.pop()
            if current == locked.pk:
                raise DependencyCycle(
                    f"Task #{depends_on.pk} already depends on #{locked.pk}; "
                    "this dependency would make a cycle."
                )
            if current in seen:
                continue
            seen.add(current)
            stack.extend(edges.get(current, ()))
        TaskDependency.objects.get_or_create(task=locked, depends_on=depends_on)
        transition_record(
            locked, kind="dependency_added", state=None, actor=actor, depends_on=depends_on.pk
        )


def task_start(*, task: Task, actor: Participant) -> Task:
    """The assignee starts (or, after a revision request, resumes) the work."""
    with transaction.atomic():
        task = task_lock(task.pk)
        require_actor(actor, task.assignee_id, "start this task", "assignee")
        require_state(task, "start", *states_of("start"))
        transition_record(
            task,
            kind="started",
            state=Task.State.IN_PROGRESS,
            actor=actor,
            notified=task.poster,
            notice=f"Work started on “{task.title}”.",
        )
        return task


def task_abandon(*, task: Task, actor: Participant, reason: str, by_platform: bool = False) -> Task:
    """The assignee gives up: the task reopens for bids, and the assignee may not claim it again.
    Refused while subtasks are open or after subtasks spent part of the escrow (reopening would
    offer a bounty the escrow no longer holds). ``by_platform``: the platform could not run a
    hosted assignee (its workers kept dying): the task reopens, with no outcome recorded against
    the agent and no bar, and the timeline says whose failure it was."""
    reason = validation.clean_text(reason, field="reason", maximum=validation.MAX_ABANDON_REASON)
    with transaction.atomic():
        task = task_lock(task.pk)
        require_actor(actor, task.assignee_id, "abandon this task", "assignee")
        require_state(task, "abandon", *states_of("abandon"))
        if selectors.unfinished_children_count(task=task):
            raise ChildrenOpen("Cancel or finish the subtasks of this task before abandoning it.")
        if selectors.task_escrow_expected(task=task) != task.bounty:
            raise NotAllowed(
                "Subtasks of this task were paid from its escrow: deliver the work instead."
            )
        assignee = task.assignee
        assert assignee is not None  # past open: constraint task_assigned_when_past_open
        if not by_platform:
            outcome_record_for(task=task, outcome="abandoned")
        agent_load_change(participant=assignee, delta=-1)
        Bid.objects.filter(task=task, status=Bid.Status.AWARDED).update(status=Bid.Status.WITHDRAWN)
        task.assignee = None
        task.price = None
        task.awarded_at = None
        task.execution_ref = None
        if not by_platform:
            task.barred = [*task.barred, assignee.pk]
        message = f"{assignee.display_name} abandoned “{task.title}”; it is open again."
        # No one's decision when the platform gives up: the timeline shows it, not the agent.
        platform: dict[str, Any] = {"by_platform": True} if by_platform else {}
        if by_platform:
            message = (
                f"The platform could not run {assignee.display_name} on “{task.title}” (our"
                " failure, not the agent's); it is open again."
            )
        transition_record(
            task,
            kind="abandoned",
            state=Task.State.OPEN,
            update_fields=("assignee", "price", "awarded_at", "execution_ref", "barred"),
            actor=None if by_platform else actor,
            notified=task.poster,
            notice=message,
            reason=reason,
            **platform,
        )
        return task


def task_cancel(*, task: Task, actor: Participant) -> Task:
    """The poster withdraws the task before work starts, or once work in progress has stalled
    (its deadline passed, or ``MARKET_STALL_HOURS`` went by without a change: see
    ``actions.work_stalls_at``) without a delivery; the assignee's outcome is then "timed out".
    The escrow goes back (to the poster, or to the parent's escrow for a subtask)."""
    with transaction.atomic():
        task = task_lock(task.pk)
        require_actor(actor, task.poster_id, "cancel this task", "poster")
        require_state(task, "cancel", *states_of("cancel"))
        if task.state in WORKING:
            stalls_at = work_stalls_at(task)
            assert stalls_at is not None  # the task is being worked on
            if stalls_at > timezone.now():
                raise InvalidTransition(
                    "Work on this task has started: it can be cancelled only once its deadline"
                    " has passed without a delivery, or once the work has stalled, from "
                    f"{stalls_at:%Y-%m-%d %H:%M} UTC."
                )
            if selectors.unfinished_children_count(task=task):
                raise ChildrenOpen("Cancel or finish the subtasks of this task first.")
            outcome_record_for(task=task, outcome="timed_out")
        elif task.state == Task.State.DRAFT:
            # Never funded: nothing to refund.
            transition_record(
                task,
                kind=Task.State.CANCELLED,
                state=Task.State.CANCELLED,
                actor=actor,
                refunded=0,
            )
            return task
        _close_with_refund(task=task, state=Task.State.CANCELLED, actor=actor)
        return task


def task_expire(*, task_id: int, now: datetime | None = None) -> bool:
    """Expire one open task past its deadline (refund). False when it is no longer due: safe to
    run twice at once, the row lock makes the second see the first's result."""
    now = now or timezone.now()
    with transaction.atomic():
        task = task_lock(task_id)
        if task.state != Task.State.OPEN or task.deadline is None or task.deadline > now:
            return False
        _close_with_refund(task=task, state=Task.State.EXPIRED, actor=None)
        return True


def tasks_expire_due() -> int:
    """Beat: expire every open task past its deadline. Idempotent; one that fails is logged and
    left for the next round."""
    due = Task.objects.filter(state=Task.State.OPEN, deadline__lte=timezone.now()).values_list(
        "pk", flat=True
    )
    return sum(
        bool(expired)
        for expired in sweep(list(due), lambda pk: task_expire(task_id=pk), what="task")
    )


def _close_with_refund(*, task: Task, state: Task.State, actor: Participant | None) -> None:
    refund = selectors.task_escrow_expected(task=task)
    was_awarded = task.state in (
        Task.State.AWARDED,
        Task.State.IN_PROGRESS,
        Task.State.REVISION_REQUESTED,
    )
    ledger_services.escrow_refund(
        task_ref=task.ledger_ref,
        refund_to=task.refund_ref,
        idempotency_key=f"{task.ledger_ref}:refund",
    )
    if was_awarded:
        agent_load_change(participant=task.assignee, delta=-1)
    Bid.objects.filter(task=task, status=Bid.Status.ACTIVE).update(status=Bid.Status.LOST)
    task.spent = task.bounty - refund
    transition_record(
        task,
        kind=state,
        state=state,
        update_fields=("spent",),
        actor=actor,
        notified=task.poster,
        notice=f"“{task.title}” was {state}; {refund} refunded.",
        refunded=refund,
    )
    if was_awarded:
        notify(recipient=task.assignee, task=task, message=f"“{task.title}” was {state}.")
