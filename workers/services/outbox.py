"""The transactional outbox: messages to workers written with the change that asks for them.

A message sent straight after a commit is lost when the broker is down at that moment; a sweep
that sends it again later (the reaper, after the queue lease) turns a 20-second outage into
minutes of delay. Here the message is a row written in the caller's transaction. After the
commit, the caller's process sends it at once and marks it sent; what the broker did not take
stays unsent and is sent by the relay (:func:`outbox_relay`: a beat task every
``OUTBOX_RELAY_INTERVAL_SECONDS``, or ``manage.py outbox_relay``) as soon as the broker answers.

Two senders never send the same row: each locks the rows it sends (``FOR UPDATE SKIP LOCKED``)
and marks them sent in the same transaction. A sender that dies between the send and its commit
leaves the row unsent, so it may be sent again: receivers are idempotent (see the model).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents_registry import queueing
from workers.models import OutboxMessage

logger = logging.getLogger(__name__)

RELAY_BATCH = 100


def outbox_send_on_commit(
    name: str, *, kwargs: dict[str, Any], countdown: float = 0, **options: Any
) -> OutboxMessage:
    """Write the message in the current transaction; send it once that commits (at once outside
    one). Never sent if the transaction rolls back. ``options``: Celery's, JSON values only."""
    message = OutboxMessage.objects.create(
        task_name=name,
        kwargs=kwargs,
        options=options,
        available_at=timezone.now() + timedelta(seconds=countdown),
    )
    _written.__dict__.setdefault("ids", []).append(message.pk)
    # robust: a failed send (the database gone after the commit) must not fail the caller.
    transaction.on_commit(_relay_written, robust=True)
    return message


# The messages this thread wrote and has not sent yet: the first commit callback sends all of
# its transaction's messages in one relay round (one lock, one update), the others find none.
# Ids of a transaction that rolled back stay until the next round, which finds no such rows.
_written = threading.local()


def _relay_written() -> None:
    ids = getattr(_written, "ids", None)
    if ids:
        _written.ids = []
        outbox_relay(ids=ids)


def outbox_unsent(name: str, **kwargs: Any) -> bool:
    """Whether a message to ``name`` with these keyword arguments waits in the outbox unsent."""
    lookups = {f"kwargs__{key}": value for key, value in kwargs.items()}
    return OutboxMessage.objects.filter(sent_at__isnull=True, task_name=name, **lookups).exists()


def outbox_relay(*, ids: list[int] | None = None) -> int:
    """Send the unsent messages (only ``ids``, when given) in order; stop at the first the broker
    refuses (the next round tries again). Returns how many were sent."""
    sent = 0
    while True:
        with transaction.atomic():
            unsent = OutboxMessage.objects.select_for_update(skip_locked=True).filter(
                sent_at__isnull=True
            )
            if ids is not None:
                unsent = unsent.filter(pk__in=ids)
            batch = list(unsent.order_by("pk")[:RELAY_BATCH])
            now = timezone.now()
            done = []
            for message in batch:
                countdown = max(0.0, (message.available_at - now).total_seconds())
                if not queueing.send(
                    message.task_name,
                    kwargs=message.kwargs,
                    countdown=countdown or None,
                    **message.options,
                ):
                    OutboxMessage.objects.filter(pk=message.pk).update(
                        send_failures=F("send_failures") + 1
                    )
                    break
                done.append(message.pk)
            if done:
                OutboxMessage.objects.filter(pk__in=done).update(sent_at=now)
        sent += len(done)
        if len(done) < RELAY_BATCH:
            return sent


def outbox_prune(*, now: Any = None) -> int:
    """Delete messages sent longer ago than ``OUTBOX_KEEP_SENT_HOURS`` (kept meanwhile to see
    what was sent and when)."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.OUTBOX_KEEP_SENT_HOURS)
    deleted, _ = OutboxMessage.objects.filter(sent_at__lt=cutoff).delete()
    return deleted


def outbox_relay_round() -> dict[str, int]:
    """Beat: send what the broker did not take, and prune what was sent long ago."""
    sent = outbox_relay()
    if sent:
        logger.info("outbox relay sent %s messages", sent)
    return {"sent": sent, "pruned": outbox_prune()}
