"""Writes of traces: ordered events appended by the worker and, through the API, by agents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from workers.exceptions import ExecutionFinished, ExecutionNotFound, WorkersError
from workers.live import execution_changed_on_commit
from workers.models import Execution, TraceEvent

MAX_EVENT_JSON_BYTES = 64 * 1024
MAX_TRACE_EVENTS = 2000


def _clean_json(value: Any, *, field: str) -> Any:
    if value is None:
        return None
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as error:
        raise WorkersError(f"{field} must be JSON: {error}.") from error
    if len(encoded) > MAX_EVENT_JSON_BYTES:
        # The worker's own events are truncated rather than refused: a trace never loses a step.
        return {"truncated": True, "bytes": len(encoded), "preview": encoded[:2000]}
    return value


def _event_fields(
    *,
    kind: str,
    name: str = "",
    inputs: Any = None,
    outputs: Any = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: int = 0,
    started_at: datetime | None = None,
    duration_ms: int = 0,
    source: str = TraceEvent.Source.WORKER,
) -> dict[str, Any]:
    """One event's columns, checked: a known kind, non-negative integers, JSON of bounded size."""
    if kind not in TraceEvent.Kind.values:
        raise WorkersError(
            f"Unknown event kind {kind!r}; use one of {', '.join(TraceEvent.Kind.values)}."
        )
    for field, value in (
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("cost", cost),
        ("duration_ms", duration_ms),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise WorkersError(f"{field} must be a non-negative integer.")
    return {
        "kind": kind,
        "source": source,
        "name": name[:200],
        "inputs": _clean_json(inputs, field="inputs"),
        "outputs": _clean_json(outputs, field="outputs"),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost": cost,
        "started_at": started_at or timezone.now(),
        "duration_ms": duration_ms,
    }


def trace_event_append(
    *,
    execution_id: int,
    kind: str,
    name: str = "",
    inputs: Any = None,
    outputs: Any = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: int = 0,
    started_at: datetime | None = None,
    duration_ms: int = 0,
    source: str = TraceEvent.Source.WORKER,
    require_active: bool = False,
) -> TraceEvent:
    """Append one event at the end of the execution's trace.

    The sequence number comes from ``UPDATE ... SET trace_length = trace_length + 1 RETURNING``:
    the row lock of that UPDATE orders concurrent appends, so two appends never share a number and
    the trace has no gaps.
    """
    fields = _event_fields(
        kind=kind,
        name=name,
        inputs=inputs,
        outputs=outputs,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost,
        started_at=started_at,
        duration_ms=duration_ms,
        source=source,
    )
    active = list(Execution.ACTIVE_STATUSES) if require_active else None
    with transaction.atomic():
        with connection.cursor() as cursor:
            sql = (
                "UPDATE workers_execution SET trace_length = trace_length + 1"
                " WHERE id = %s AND trace_length < %s"
            )
            params: list[Any] = [execution_id, MAX_TRACE_EVENTS]
            if active:
                sql += " AND status = ANY(%s)"
                params.append(active)
            cursor.execute(sql + " RETURNING trace_length, attempts", params)
            row = cursor.fetchone()
        if row is None:
            execution = Execution.objects.filter(pk=execution_id).only("status", "trace_length")
            found = execution.first()
            if found is None:
                raise ExecutionNotFound(f"Execution {execution_id} does not exist.")
            if found.trace_length >= MAX_TRACE_EVENTS:
                raise ExecutionFinished(f"The trace already holds {MAX_TRACE_EVENTS} events.")
            raise ExecutionFinished(
                f"Execution {execution_id} is {found.status}: its trace is closed."
            )
        sequence, attempt = row
        event = TraceEvent.objects.create(
            execution_id=execution_id, sequence=sequence, attempt=attempt, **fields
        )
        execution_changed_on_commit(execution_id=execution_id, kind="event")
    return event


def trace_event_rows(*, execution: Execution, events: Sequence[dict[str, Any]]) -> list[TraceEvent]:
    """The worker's ``events`` (keyword arguments of :func:`trace_event_append`) as the rows
    that follow the trace's ``trace_length`` events, for the caller to insert with the
    execution's row (``update_row(..., inserting=rows)``) and ``trace_length`` moved past them.

    The caller holds the execution's row lock and has read ``trace_length`` and ``attempts``
    under it: the lock orders these events against appends through the API exactly as
    ``trace_event_append``'s counter update does, so numbers stay unique and gapless. Events
    past ``MAX_TRACE_EVENTS`` are left out (the trace is full).
    """
    return [
        TraceEvent(
            execution_id=execution.pk,
            sequence=execution.trace_length + offset,
            attempt=execution.attempts,
            **_event_fields(**event),
        )
        for offset, event in enumerate(events, start=1)
        if execution.trace_length + offset <= MAX_TRACE_EVENTS
    ]


def trace_recorder(execution_id: int) -> Any:
    """The ``record`` callable a runtime receives: appends worker events to this trace."""
    return partial(trace_event_append, execution_id=execution_id)


class BufferedTrace:
    """Holds a fast run's events until the transaction that ends the attempt writes them.

    A built-in agent finishes in milliseconds: nobody watches its progress live, and writing each
    event in a transaction of its own tripled the commits of an execution. Events keep their order
    and their own start times, and are written in one INSERT with the attempt's outcome
    (:func:`trace_event_rows`); if the attempt turns out stale (another worker took it
    over), they are dropped with the rest of its effects.
    """

    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        self.pending: list[dict[str, Any]] = []

    def record(self, **event: Any) -> None:
        event.setdefault("started_at", timezone.now())
        self.pending.append(event)

    def take(self) -> list[dict[str, Any]]:
        """The events held so far, in order; the buffer is empty afterwards."""
        events, self.pending = self.pending, []
        return events
