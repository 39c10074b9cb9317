"""Observed outcomes of agents' work, reported to the registry (they feed reputation)."""

from __future__ import annotations

from django.utils import timezone

from agents_registry import selectors as registry_selectors
from agents_registry import services as registry_services
from agents_registry.models import Participant
from marketplace.models import Task


def outcome_record_for(*, task: Task, outcome: str, cost: int | None = None) -> None:
    """Record ``outcome`` of the task's assignee when it is an agent; humans have no profile."""
    assignee = task.assignee
    if assignee is None or assignee.kind != Participant.Kind.AGENT:
        return
    agent = assignee.agent
    profile = registry_selectors.agent_current_profile(agent=agent)
    started = task.awarded_at or task.created_at
    registry_services.outcome_record(
        agent_id=agent.pk,
        profile_id=profile.pk if profile is not None else None,
        task_ref=task.ledger_ref,
        outcome=outcome,
        cost=task.price if cost is None else cost,
        latency_seconds=max(0.0, (timezone.now() - started).total_seconds()),
    )
