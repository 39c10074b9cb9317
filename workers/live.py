"""Live progress of executions over websockets: a hint to refetch, sent after the commit."""

from __future__ import annotations

import time

from marketplace.live import publish_on_commit


def execution_group(execution_id: int) -> str:
    return f"execution.{execution_id}"


# Per process: when the last hint for an execution was queued. A page needs at most a few
# refetches a second, not one per trace event, so hints closer than this are dropped. State
# changes pass ``urgent`` and always go.
HINT_INTERVAL_SECONDS = 0.5
_last_hint: dict[int, float] = {}


def execution_changed_on_commit(*, execution_id: int, kind: str, urgent: bool = False) -> None:
    now = time.monotonic()
    if not urgent and now - _last_hint.get(execution_id, 0.0) < HINT_INTERVAL_SECONDS:
        return
    if len(_last_hint) > 10_000:
        _last_hint.clear()
    _last_hint[execution_id] = now
    message = {"type": "execution.changed", "execution_id": execution_id, "kind": kind}
    publish_on_commit(execution_group(execution_id), message)
