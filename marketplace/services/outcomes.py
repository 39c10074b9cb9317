"""Observed outcomes of agents' work, reported to the registry (they feed reputation)."""

from __future__ import annotations

from django.utils import timezone

from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.models import Participant
from marketplace.models import Delivery, Task


def outcome_record_for(*, task: Task, outcome: str, cost: int | None = None) -> None:
    """Record ``outcome`` of the task's assignee when it is an agent; humans have no profile.
    Internal work (an owner's own agents) moves no reputation. The outcome carries the task's
    vector (the evidence of the agent's chance on similar tasks) and links to the decision that
    chose the agent (the registry finds the latest for this task)."""
    assignee = task.assignee
    if assignee is None or assignee.kind != Participant.Kind.AGENT or task.internal:
        return
    cost = task.price if cost is None else cost
    assert cost is not None  # an assigned task has its price: task_assigned_when_past_open
    agent = assignee.agent
    profile = registry_selectors.agent_current_profile(agent=agent)
    registry_services.outcome_record(
        agent_id=agent.pk,
        profile_id=profile.pk if profile is not None else None,
        task_ref=task.ledger_ref,
        outcome=outcome,
        cost=cost,
        latency_seconds=_delivery_latency_seconds(task),
        embedding=task.embedding if task.embedding is not None else None,
        embedding_model=task.embedding_model,
    )


def _delivery_latency_seconds(task: Task) -> float:
    """How long the agent took to deliver what is being judged: from the award (or from the
    revision request that sent it back) to that delivery. Not until the review: the poster's
    time to decide is not the agent's latency."""
    recent = list(
        Delivery.objects.filter(task=task)
        .order_by("-created_at", "-pk")
        .values_list("created_at", "reviewed_at")[:2]
    )
    delivered_at = recent[0][0] if recent else timezone.now()
    sent_back_at = recent[1][1] if len(recent) > 1 else None
    started = sent_back_at or task.awarded_at or task.created_at
    return max(0.0, (delivered_at - started).total_seconds())
