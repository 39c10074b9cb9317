"""Live progress of executions over websockets: a hint to refetch, sent after the commit."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def execution_group(execution_id: int) -> str:
    return f"execution.{execution_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a lost hint must not fail committed work; the page polls too
        logger.warning("could not publish %s to %s", message.get("type"), group, exc_info=True)


# Per process: when the last hint for an execution was queued. A hint costs a Redis round trip
# (a few ms through async_to_sync); a page needs at most a few refetches a second, not one per
# trace event, so hints closer than this are dropped. State changes pass ``urgent`` and always go.
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
    transaction.on_commit(partial(_send, execution_group(execution_id), message))
