"""Reads of the workers app: executions with their access checks, and trace exports."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from agents_registry.models import Agent, Participant
from agents_registry.prepared import Joined, fetch_joined
from marketplace import selectors as market_selectors
from workers.exceptions import ExecutionNotFound
from workers.models import Execution, TraceEvent

TRACE_SCHEMA_VERSION = "1.0"
TRACE_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "trace-v1.schema.json"


@cache
def trace_schema() -> dict[str, Any]:
    return json.loads(TRACE_SCHEMA_PATH.read_text())


@cache
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
    agent.participant = participant
    execution.agent = agent
    return execution


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
