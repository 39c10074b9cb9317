"""What every transition shares: the row lock, the timeline, notifications, live updates and the
award hook."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from agents_registry import services as registry_services
from agents_registry.models import Participant
from core.prepared import (
    database,
    insert_statement,
    model_field,
    prepared_cursor,
    update_statement,
)
from marketplace import selectors
from marketplace.exceptions import InvalidTransition, NotAllowed, NotFound
from marketplace.live import publish_on_commit
from marketplace.models import Notification, Task, TaskEvent

logger = logging.getLogger(__name__)


def task_group(task_id: int) -> str:
    return f"task.{task_id}"


FEED_GROUP = "market.feed"


def task_lock(task_id: int) -> Task:
    """The task row under ``FOR UPDATE``: every transition re-reads the state under this lock, so
    two racing transitions see each other's result instead of a stale copy. Parents are always
    locked before their children (a parent's primary key is smaller), so locks nest in
    primary-key order and cannot deadlock. The poster and the assignee (and their agents) come
    with it (notices and payouts name them); the parent, which few transitions need, and the
    vector load when used."""
    task = selectors.task_with_parties(task_id, for_update=True)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return task


def task_lock_as(viewer: selectors.Viewer | None, task_id: int) -> Task:
    """``task_lock``; for an API caller (``viewer``), a task it may not see is the 404 that
    ``selectors.access_task`` gives, so the endpoint needs no read of its own before the lock."""
    if viewer is None:
        return task_lock(task_id)
    task = selectors.task_with_parties(task_id, for_update=True)
    if task is None or not selectors.can_view_task(viewer, task):
        raise NotFound(f"Task {task_id} does not exist or is private.")
    return task


def require_state(task: Task, action: str, *states: str) -> None:
    if task.state not in states:
        allowed = ", ".join(states)
        raise InvalidTransition(
            f"Cannot {action} task #{task.pk}: it is {task.state}, and this needs {allowed}."
        )


def require_actor(
    actor: Participant | None, expected_id: int | None, action: str, who: str
) -> None:
    if actor is None or expected_id is None or actor.pk != expected_id:
        raise NotAllowed(f"Only the {who} can {action}.")


def require_active_agent(participant: Participant) -> None:
    if participant.kind == Participant.Kind.AGENT:
        agent = participant.agent
        if agent.status != agent.Status.ACTIVE:
            raise NotAllowed(f"Agent {agent.name} is {agent.status} and cannot take work.")


def notify(*, recipient: Participant | None, task: Task, message: str) -> None:
    if recipient is None:
        return
    Notification.objects.create(recipient=recipient, task=task, message=message[:300])
    _notified_on_commit(recipient)


def _notified_on_commit(recipient: Participant) -> None:
    if recipient.user_id:
        publish_on_commit(f"user.{recipient.user_id}", {"type": "notify", "topic": "task"})


def transition_record(
    task: Task,
    *,
    kind: str,
    state: Task.State | None,
    update_fields: Sequence[str] = (),
    actor: Participant | None = None,
    notified: Participant | None = None,
    notice: str = "",
    preceded_by: Sequence[str] = (),
    **data: Any,
) -> None:
    """Every transition of the locked ``task`` writes through this, in one prepared statement:
    the task moved to ``state`` (None: it stays where it is, as when a bid arrives) with the
    other ``update_fields`` the transition set on it and ``updated_at``, as
    ``task.save(update_fields=...)`` would; its timeline event ``kind`` with ``data`` (after
    events of the kinds ``preceded_by``, by the same actor and without data: steps taken in one
    go); and the ``notice`` to ``notified``, when there is one (a second notice goes through
    :func:`notify`). The rows are model instances, so their columns and defaults are the
    models'; the read cache learns of the change from the database's own trigger."""
    if state is not None:
        task.state = state
    fields = (*(("state",) if state is not None else ()), *update_fields)
    recipient = notified if notice else None
    parts: list[str] = []
    params: list[Any] = []
    if fields:
        columns = (*fields, "updated_at")
        task.updated_at = timezone.now()
        db = database()
        parts.append(f"moved AS ({update_statement(Task, columns)})")
        params += [
            field.get_db_prep_save(getattr(task, field.attname), db)
            for field in (model_field(Task, name) for name in columns)
        ]
        params.append(task.pk)
    if recipient is not None:
        notification = Notification(recipient=recipient, task=task, message=notice[:300])
        insert, document = insert_statement(Notification, [notification])
        parts.append(f"notice AS ({insert})")
        params.append(document)
    events = [TaskEvent(task=task, kind=earlier, actor=actor, data={}) for earlier in preceded_by]
    events.append(TaskEvent(task=task, kind=kind, actor=actor, data=data))
    insert, document = insert_statement(TaskEvent, events)
    params.append(document)
    with prepared_cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {insert}" if parts else insert, params)
    broadcast_task_changed_on_commit(task_id=task.pk, kind=kind)
    if recipient is not None:
        _notified_on_commit(recipient)


def broadcast_task_changed_on_commit(*, task_id: int, kind: str) -> None:
    message = {"type": "task.changed", "task_id": task_id, "kind": kind}
    publish_on_commit(task_group(task_id), message)
    publish_on_commit(FEED_GROUP, message)


def award_handler_call(*, task: Task, assignee: Participant) -> int | None:
    """The explicit award hook (instead of a signal): ``settings.MARKET_AWARD_HANDLER`` names a
    callable ``handler(task=..., assignee=...)`` that runs inside the award's transaction, e.g.
    ``workers.services.execution_create_for_award`` to start a hosted agent. It is called for
    every award (by hand, by claim, automatic); it decides itself whether the assignee is hosted.
    What it answers with a ``pk`` (an execution) is the task's ``execution_ref``."""
    path = getattr(settings, "MARKET_AWARD_HANDLER", "")
    if not path:
        return None
    started = import_string(path)(task=task, assignee=assignee)
    return getattr(started, "pk", None)


def revision_handler_call(*, task: Task, delivery_id: int, message: str) -> None:
    """The revision hook: ``settings.MARKET_REVISION_HANDLER`` names ``handler(task=...,
    delivery_id=..., message=...)``, called inside every revision request's transaction (by the
    poster, or automatic after failed checks); ``workers.services.execution_create_for_revision``
    runs a hosted assignee again with the message."""
    path = getattr(settings, "MARKET_REVISION_HANDLER", "")
    if path:
        import_string(path)(task=task, delivery_id=delivery_id, message=message)


def post_handler_call(*, task: Task) -> None:
    """The explicit post hook: ``settings.MARKET_POST_HANDLER`` names ``handler(task=...)``,
    called inside ``task_post``'s transaction (``workers.services.hosted_bids_queue`` queues the
    hosted agents' bids for after the commit)."""
    path = getattr(settings, "MARKET_POST_HANDLER", "")
    if path:
        import_string(path)(task=task)


def accept_handler_call(*, task: Task) -> None:
    """The explicit accept hook: ``settings.MARKET_ACCEPT_HANDLER`` names ``handler(task=...)``,
    called inside the settlement's transaction (``workers.services.skill_distill_queue`` queues
    the task's distilled experience skill for after the commit)."""
    path = getattr(settings, "MARKET_ACCEPT_HANDLER", "")
    if path:
        import_string(path)(task=task)


def agent_load_change(*, participant: Participant | None, delta: int) -> None:
    if participant is not None and participant.kind == Participant.Kind.AGENT:
        registry_services.agent_load_change(agent_id=participant.agent.pk, delta=delta)
