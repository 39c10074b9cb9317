"""Websocket hints: "this changed, refetch", published after the commit by one thread per process.

A hint is never the truth (the database is); a page that misses one refetches on its next event or
reload. So publishing must never slow down or fail the write that caused it. Sending through
``async_to_sync(layer.group_send)`` from sync code costs a new event loop, a thread and a Redis
connection each time. Instead the caller puts the hint on an in-process queue and one daemon
thread, which keeps its
own event loop and so its channel layer's connection pool, sends whatever is queued in batches,
one hint per group and type of each batch (see :func:`coalesced`). A batch gathers for
``GATHER_SECONDS`` after its first hint: a page hears of a change that much later, imperceptibly,
and a busy process sends far fewer (each ``group_send`` is two Redis round trips and the work of
``channels_redis``; BENCHMARKS.md has the cost).

The thread is started lazily, and again after a fork (Celery's prefork pool, gunicorn workers).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import threading
import time
from functools import partial
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.db import transaction

logger = logging.getLogger(__name__)

_MAX_BATCH = 500
GATHER_SECONDS = 0.05
_queue: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
_pending = 0  # hints queued and not yet sent (for flush())
_condition = threading.Condition()
_owner_pid: int | None = None
_thread: threading.Thread | None = None
_STOP: tuple[str, dict[str, Any]] = ("", {})  # the sentinel that ends the thread


def publish(group: str, message: dict[str, Any]) -> None:
    """Queue one hint for ``group`` now (use :func:`publish_on_commit` inside a transaction)."""
    global _pending
    _ensure_thread()
    with _condition:
        _pending += 1
    _queue.put((group, message))


def publish_on_commit(group: str, message: dict[str, Any]) -> None:
    transaction.on_commit(partial(publish, group, message))


def flush(timeout: float = 5.0) -> bool:
    """Wait until every queued hint was sent (tests, and a clean exit); True if it drained."""
    with _condition:
        return _condition.wait_for(lambda: _pending == 0, timeout=timeout)


def _ensure_thread() -> None:
    global _owner_pid, _queue, _pending, _thread
    if _owner_pid == os.getpid():
        return
    with _condition:
        if _owner_pid == os.getpid():
            return
        # After a fork the parent's thread does not exist here: start afresh.
        _queue = queue.SimpleQueue()
        _pending = 0
        _owner_pid = os.getpid()
        _thread = threading.Thread(target=_run, name="live-hints", daemon=True)
        _thread.start()
        atexit.register(_shutdown)


def _shutdown() -> None:
    """At exit: send what is queued, then end the thread before the interpreter finalises (a
    daemon thread woken during finalisation aborts the process)."""
    if _thread is None or _owner_pid != os.getpid() or not _thread.is_alive():
        return
    flush(timeout=2)
    _queue.put(_STOP)
    _thread.join(timeout=2)


def _run() -> None:
    global _pending
    loop = asyncio.new_event_loop()
    # A layer of its own: its connections belong to this thread's loop and are reused.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    hints = _queue
    while True:
        batch = [hints.get()]
        gathered_until = time.monotonic() + GATHER_SECONDS
        # Gathering ends at the sentinel, so it can only be the last of a batch.
        while len(batch) < _MAX_BATCH and batch[-1] is not _STOP:
            try:
                batch.append(hints.get(timeout=max(0.0, gathered_until - time.monotonic())))
            except queue.Empty:
                break
        stopping = batch[-1] is _STOP
        hints_to_send = coalesced(batch[:-1] if stopping else batch)
        try:
            loop.run_until_complete(_send_all(layer, hints_to_send))
        except Exception:  # a lost hint must not kill the publisher; pages refetch anyway
            logger.warning(
                "could not publish %d websocket hints", len(hints_to_send), exc_info=True
            )
        with _condition:
            _pending -= len(batch)
            _condition.notify_all()
        if stopping:
            # channels_redis: close its connections cleanly; at exit nothing more can be done.
            with contextlib.suppress(Exception):
                loop.run_until_complete(layer.close_pools())
            loop.close()
            return


def coalesced(hints: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One hint per group, type and topic: the last queued. A hint only says "refetch", so the
    last of several says it all (the page refetches once and sees the latest state). Under load
    this drops most of them (a feed or a poster's notifications hear of many tasks at once), and
    each costs the publisher two Redis round trips."""
    latest = {
        (group, message.get("type"), message.get("topic")): (group, message)
        for group, message in hints
    }
    return list(latest.values())


async def _send_all(layer: Any, batch: list[tuple[str, dict[str, Any]]]) -> None:
    listened = await _listened(layer, {group for group, _ in batch})
    for group, message in batch:
        if group in listened:
            await layer.group_send(group, message)


async def _listened(layer: Any, groups: set[str]) -> set[str]:
    """The groups that have members, asked of Redis in one round trip per server: most hints
    go to groups nobody listens to (a task's or an execution's page that nobody has open), and
    ``group_send`` spends two round trips finding that out. A group whose only members have
    expired still gets
    its ``group_send``, which clears them. Layers other than Redis's are sent everything."""
    group_key = getattr(layer, "_group_key", None)  # channels_redis: where a group's members are
    if group_key is None:
        return groups
    by_server: dict[int, list[str]] = {}
    for group in groups:
        by_server.setdefault(layer.consistent_hash(group), []).append(group)
    found: set[str] = set()
    for index, names in by_server.items():
        pipeline = layer.connection(index).pipeline(transaction=False)
        for name in names:
            pipeline.zcard(group_key(name))
        counts = await pipeline.execute()
        found.update(name for name, members in zip(names, counts, strict=True) if members)
    return found
