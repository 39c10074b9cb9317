"""The market's events as participants receive them: the catalogue, who receives each, and what.

The source is the market's own timeline (``marketplace.TaskEvent``), written in the same
transaction as the change it records: a committed change always has its event and a rolled-back
one never does, so the timeline is the outbox and the market's transactions pay nothing for
subscriptions (``workers.services.subscriptions`` reads it after the commit).

Private events go only to the parties of a task: :func:`event_notices` is the one place that
decides who receives what, from the task's poster and assignee (the parties the market notifies
on the same changes). ``task.matched`` is the only event that reaches non-parties, and only for a
public task, from the registry's matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from agents_registry import selectors as registry_selectors
from agents_registry.models import Agent, Participant
from ledger import selectors as ledger_selectors
from ledger.models import JournalEntry
from marketplace.models import Task, TaskEvent

EVENT_TYPES: dict[str, str] = {
    "task.matched": "A public task was posted that matches your agent's capability profile.",
    "task.awarded": "A task was awarded: to you, or your task to someone.",
    "task.delivered": "Work was delivered on your task: review it.",
    "task.revision_requested": "The poster of a task you work on asked for a revision.",
    "task.accepted": "A delivery was accepted and its task settled.",
    "task.rejected": "A delivery was rejected (a dispute opens).",
    "dispute.opened": "A dispute opened on a task you are a party to.",
    "dispute.resolved": "Staff resolved a dispute on a task you are a party to.",
    "payment.received": "Credits arrived in your wallet: a settlement's payout, a dispute's share.",
}
PING = "ping"  # sent on request to test an endpoint; every subscription receives it

# The timeline's kinds that make events, and the state each leaves the task in (an event is
# fanned out a moment after its change, when the task may have moved on).
SOURCE_KINDS: dict[str, str] = {
    "posted": Task.State.OPEN,
    "awarded": Task.State.AWARDED,
    "delivered": Task.State.DELIVERED,
    "revision_requested": Task.State.REVISION_REQUESTED,
    "accepted": Task.State.ACCEPTED,
    "rejected": Task.State.DISPUTED,
    "resolved": Task.State.RESOLVED,
}


@dataclass(frozen=True)
class Notice:
    """One event for one participant: its type and the event-specific part of its data."""

    event_type: str
    recipient_id: int
    data: dict[str, Any]


def event_id(*, task_event: TaskEvent, event_type: str) -> str:
    """The Standard Webhooks message id: one per change and event type, the same on retries."""
    return f"evt_{task_event.pk}_{event_type.replace('.', '_')}"


def event_notices(*, task_event: TaskEvent, task: Task) -> list[Notice]:
    """Who receives which event of this timeline entry (never ``task.matched``, see
    :func:`matched_notices`): the task's poster and assignee, each only for what concerns them."""
    data = task_event.data or {}
    poster, assignee = task.poster_id, task.assignee_id
    notices: list[Notice] = []

    def add(event_type: str, recipient: int | None, **extra: Any) -> None:
        if recipient is not None:
            notices.append(Notice(event_type, recipient, extra))

    kind = task_event.kind
    if kind == "awarded":
        awarded_to = data.get("assignee") or assignee
        details = {"assignee_id": awarded_to, "price": task.price, "how": data.get("how")}
        add("task.awarded", awarded_to, **details)
        add("task.awarded", poster, **details)
    elif kind == "delivered":
        add("task.delivered", poster, delivery_id=data.get("delivery"))
    elif kind == "revision_requested":
        add("task.revision_requested", assignee, message=data.get("message", ""))
    elif kind == "accepted":
        details = {"delivery_id": data.get("delivery"), "automatic": data.get("automatic")}
        add("task.accepted", assignee, **details)
        add("task.accepted", poster, **details)
        paid = _credited(task.assignee, task, JournalEntry.Reason.ESCROW_SETTLE)
        if paid:
            add("payment.received", assignee, amount=paid, reason="settlement")
    elif kind == "rejected":
        details = {"dispute_id": data.get("dispute"), "reason": data.get("reason", "")}
        add("task.rejected", assignee, **details)
        add("dispute.opened", assignee, **details)
        add("dispute.opened", poster, **details)
    elif kind == "resolved":
        details = {"assignee_share": data.get("assignee_share"), "refund": data.get("refund")}
        add("dispute.resolved", assignee, **details)
        add("dispute.resolved", poster, **details)
        for party, why in ((task.assignee, "dispute_resolution"), (task.poster, "dispute_refund")):
            paid = _credited(party, task, JournalEntry.Reason.ESCROW_SPLIT)
            if paid and party is not None:  # nothing is credited to no one
                add("payment.received", party.pk, amount=paid, reason=why)
    return notices


def _credited(party: Participant | None, task: Task, reason: str) -> int:
    """What the task's settlement (or split) put into ``party``'s wallet, net of fees."""
    if party is None:
        return 0
    return ledger_selectors.credited_to(
        owner_ref=party.ledger_ref, domain_ref=task.ledger_ref, reason=reason
    )


def matched_notices(*, task: Task, subscribed_agent_ids: set[int]) -> list[Notice]:
    """``task.matched`` for the subscribed agents among the registry's best matches of a public
    task (the same ranking and hard filters as the market's matching: budget, status, load,
    policy, deadline), over a similarity floor."""
    if (
        not subscribed_agent_ids
        or task.visibility != Task.Visibility.PUBLIC
        or task.state == Task.State.DRAFT
        or task.embedding is None
    ):
        return []
    own = Agent.objects.filter(
        Q(owner_id=task.poster_id) | Q(participant_id=task.poster_id)
    ).values_list("pk", flat=True)
    result = registry_selectors.match_agents(
        embedding=list(task.embedding),
        budget=task.bounty,
        deadline=task.deadline,
        exclude_agent_ids=list(own),
        limit=settings.EVENTS_MATCH_LIMIT,
    )
    return [
        Notice(
            "task.matched",
            candidate.agent.participant_id,
            {"similarity": round(candidate.similarity, 4), "price": candidate.price},
        )
        for candidate in result.candidates
        if candidate.agent.pk in subscribed_agent_ids
        and candidate.similarity >= settings.EVENTS_MATCH_MIN_SIMILARITY
    ]


def task_summary(task: Task, *, state: str, party: bool) -> dict[str, Any]:
    """The task as an event shows it; ``party``: for its poster or assignee (the price and the
    assignee), else only what its public page shows."""
    base = settings.SITE_URL.rstrip("/")
    summary: dict[str, Any] = {
        "id": task.pk,
        "title": task.title,
        "state": state,
        "bounty": task.bounty,
        "deadline": task.deadline.isoformat() if task.deadline else None,
        "poster_id": task.poster_id,
        "parent_id": task.parent_id,
        "url": f"{base}/tasks/{task.pk}/",
        "api_url": f"{base}/api/v1/tasks/{task.pk}/",
        "mcp_resource": f"market://tasks/{task.pk}",
    }
    if party:
        summary.update(price=task.price, assignee_id=task.assignee_id)
    else:
        summary["description"] = task.description[:2000]
    return summary


def event_payload(
    *, notice: Notice, task_event: TaskEvent, task: Task, message_id: str
) -> dict[str, Any]:
    """The body sent, in the Standard Webhooks shape: ``type``, ``timestamp`` and ``data``."""
    party = notice.event_type != "task.matched"
    return {
        "id": message_id,
        "type": notice.event_type,
        "timestamp": task_event.created_at.isoformat(),
        "data": {
            "task": task_summary(task, state=SOURCE_KINDS[task_event.kind], party=party),
            **notice.data,
        },
    }
