"""Reads of the workers app: executions with their access checks, and trace exports."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from agents_registry.models import Agent, Participant
from core.prepared import Joined, derived_from_models, fetch_joined
from marketplace import selectors as market_selectors
from marketplace.models import Task
from workers.exceptions import ExecutionNotFound, SubscriptionNotFound
from workers.models import EventDelivery, EventSubscription, Execution, TraceEvent

TRACE_SCHEMA_VERSION = "1.0"
TRACE_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "trace-v1.schema.json"


@functools.cache
def trace_schema() -> dict[str, Any]:
    return json.loads(TRACE_SCHEMA_PATH.read_text())


@derived_from_models
def _execution_lookup() -> tuple[str, tuple[Joined, ...]]:
    parts = (Joined(Execution, "e"), Joined(Agent, "a"), Joined(Participant, "p"))
    execution, agent, participant = parts
    sql = (
        f"SELECT {', '.join(part.columns for part in parts)} FROM {execution.table}"  # noqa: S608
        f" JOIN {agent.table} ON a.id = e.agent_id"
        f" JOIN {participant.table} ON p.id = a.participant_id"
        " WHERE e.id = %s"
    )
    return sql, parts


def execution_with_agent(execution_id: int, *, for_update: bool = False) -> Execution | None:
    """The execution with its agent and the agent's participant: what
    ``select_related("agent__participant")`` gives, from one prepared statement (every attempt
    starts here; the ORM compiled that join in longer than the database ran it). ``for_update``
    locks the execution's row (not the agent's) until the transaction ends."""
    sql, parts = _execution_lookup()
    if for_update:
        sql += " FOR UPDATE OF e"
    found = fetch_joined(sql, [execution_id], parts)
    if not found:
        return None
    execution, agent, participant = found
    assert isinstance(execution, Execution) and isinstance(agent, Agent)  # inner joins
    assert isinstance(participant, Participant)
    agent.participant = participant
    execution.agent = agent
    return execution


def executions_of(
    *, viewer: market_selectors.Viewer, task_id: int | None = None, status: str = ""
) -> QuerySet[Execution]:
    """The executions of the viewer's agents (an agent: its own; a person: those of the agents
    it owns), newest first; ``task_id``/``status`` narrow them."""
    queryset = Execution.objects.select_related("agent").filter(
        agent__participant_id__in=market_selectors.spoken_for_ids(viewer)
    )
    if task_id is not None:
        queryset = queryset.filter(task_ref=task_id)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-created_at", "-pk")


def can_view_execution(viewer: market_selectors.Viewer, execution: Execution, task: Any) -> bool:
    """Staff, the agent (or its owner) that ran it, and the task's poster (or its owner)."""
    if viewer.is_staff:
        return True
    return market_selectors.speaks_for(
        viewer, execution.agent.participant
    ) or market_selectors.speaks_for(viewer, task.poster)


def access_execution(
    *, viewer: market_selectors.Viewer, execution_id: int
) -> tuple[Execution, Any]:
    """The execution and its task, or ExecutionNotFound (also when it is not the viewer's: its
    existence does not leak)."""
    execution = (
        Execution.objects.select_related("agent__participant", "agent__owner")
        .filter(pk=execution_id)
        .first()
    )
    missing = ExecutionNotFound(f"Execution {execution_id} does not exist or is not yours.")
    if execution is None:
        raise missing
    task = (
        market_selectors.tasks_visible(
            viewer=market_selectors.Viewer(participant=None, is_staff=True)
        )
        .filter(pk=execution.task_ref)
        .select_related("poster__agent")
        .first()
    )
    if task is None or not can_view_execution(viewer, execution, task):
        raise missing
    return execution, task


def trace_events(*, execution: Execution) -> QuerySet[TraceEvent]:
    return TraceEvent.objects.filter(execution=execution).order_by("sequence")


def executions_for_task(*, task_id: int) -> QuerySet[Execution]:
    return Execution.objects.filter(task_ref=task_id).select_related("agent").order_by("-pk")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def trace_export(*, execution: Execution, task: Any) -> dict[str, Any]:
    """The execution's trace as a document valid against ``trace_schema()`` (version 1.0)."""
    events = []
    totals = {"events": 0, "input_tokens": 0, "output_tokens": 0, "event_cost": 0}
    for event in trace_events(execution=execution):
        events.append(
            {
                "sequence": event.sequence,
                "attempt": event.attempt,
                "kind": event.kind,
                "source": event.source,
                "name": event.name,
                "inputs": event.inputs,
                "outputs": event.outputs,
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
                "cost": event.cost,
                "started_at": _iso(event.started_at),
                "duration_ms": event.duration_ms,
            }
        )
        totals["events"] += 1
        totals["input_tokens"] += event.input_tokens
        totals["output_tokens"] += event.output_tokens
        totals["event_cost"] += event.cost
    agent = execution.agent
    error = (
        {"code": execution.error_code, "message": execution.error_message}
        if execution.error_code
        else None
    )
    return {
        "schema_version": TRACE_SCHEMA_VERSION,
        "exported_at": timezone.now().isoformat(),
        "execution": {
            "id": execution.pk,
            "status": execution.status,
            "attempts": execution.attempts,
            "max_attempts": execution.max_attempts,
            "budget": execution.budget,
            "cost": execution.cost,
            "input_tokens": execution.input_tokens,
            "output_tokens": execution.output_tokens,
            "delivery_id": execution.delivery_ref,
            "created_at": _iso(execution.created_at),
            "started_at": _iso(execution.started_at),
            "finished_at": _iso(execution.finished_at),
            "duration_seconds": execution.duration_seconds,
            "error": error,
        },
        "task": {"id": task.pk, "title": task.title},
        "agent": {"id": agent.pk, "slug": agent.slug, "name": agent.name, "runtime": agent.runtime},
        "events": events,
        "totals": totals,
    }


def _with_task_titles(executions: QuerySet[Execution]) -> QuerySet[Execution]:
    title = Task.objects.filter(pk=OuterRef("task_ref")).values("title")[:1]
    return executions.select_related("agent").annotate(task_title=Subquery(title))


def runs_for_task(*, viewer: market_selectors.Viewer, task: Any) -> list[Execution]:
    """The hosted runs of a task, newest first, for those who may read their traces (staff, the
    poster, the agent or its owner: ``can_view_execution``); nobody else learns of them."""
    if not (
        viewer.is_staff
        or market_selectors.speaks_for(viewer, task.poster)
        or market_selectors.speaks_for(viewer, task.assignee)
    ):
        return []
    runs = list(
        Execution.objects.filter(task_ref=task.pk)
        .select_related("agent__participant")
        .order_by("-pk")[:50]
    )
    # A run after one of the same agent that delivered is the revision of that delivery (an
    # attribute of these instances for the page, not of the model).
    for run in runs:
        run.revises = next(  # type: ignore[attr-defined]
            (
                earlier.delivery_ref
                for earlier in runs
                if earlier.pk < run.pk and earlier.agent_id == run.agent_id and earlier.delivery_ref
            ),
            None,
        )
    return [run for run in runs if can_view_execution(viewer, run, task)]


def runs_for_agent(
    *, viewer: market_selectors.Viewer, agent: Agent, limit: int = 20
) -> list[Execution]:
    """An agent's recent runs: all of them for staff and the agent's owner, else those of tasks
    the viewer posted (the runs whose traces ``can_view_execution`` lets the viewer read)."""
    runs = Execution.objects.filter(agent=agent)
    if not (viewer.is_staff or market_selectors.speaks_for(viewer, agent.participant)):
        if viewer.participant is None:
            return []
        posted = Task.objects.filter(poster=viewer.participant).values("pk")
        runs = runs.filter(task_ref__in=posted)
    return list(_with_task_titles(runs).order_by("-pk")[:limit])


def runs_for_participant(*, participant: Participant, limit: int = 20) -> list[Execution]:
    """'My work': the recent runs of the participant's own agents and of the tasks it posted."""
    posted = Task.objects.filter(poster=participant).values("pk")
    runs = Execution.objects.filter(Q(agent__owner=participant) | Q(task_ref__in=posted))
    return list(_with_task_titles(runs).order_by("-pk")[:limit])


# --- event subscriptions --------------------------------------------------------------------------


def subscriptions_of(*, viewer: market_selectors.Viewer) -> QuerySet[EventSubscription]:
    """The viewer's own subscriptions and those of the agents it owns, newest first."""
    if viewer.participant is None:
        return EventSubscription.objects.none()
    own = viewer.participant.pk
    return (
        EventSubscription.objects.filter(
            Q(participant_id=own) | Q(participant__agent__owner_id=own)
        )
        .select_related("participant__agent")
        .order_by("-created_at", "-pk")
    )


def access_subscription(
    *, viewer: market_selectors.Viewer, subscription_id: int
) -> EventSubscription:
    """The subscription if the viewer speaks for its participant, else SubscriptionNotFound."""
    found = subscriptions_of(viewer=viewer).filter(pk=subscription_id).first()
    if found is None:
        raise SubscriptionNotFound(
            f"Subscription {subscription_id} does not exist or is not yours."
        )
    return found


def subscription_deliveries(*, subscription: EventSubscription) -> QuerySet[EventDelivery]:
    """The subscription's delivery log, newest first."""
    return EventDelivery.objects.filter(subscription=subscription).order_by("-created_at", "-pk")
