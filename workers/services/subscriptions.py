"""Writes of event subscriptions: subscribe, rotate the secret, pause and resume, and the
delivery machinery (fan-out of the market's timeline, dispatch of due deliveries, one attempt).

Exactly once per change: the fan-out reads ``marketplace.TaskEvent`` in id order behind a cursor
(see ``workers.models.EventCursor``) and writes each event's deliveries under a unique
(subscription, message id) key, so reading an event twice cannot deliver it twice. Ids are taken
at insert but become visible at commit, so a smaller id can appear after a larger one was read:
the cursor only moves past events older than any transaction runs (``SETTLED``), and events read
above it are remembered (``EventFanout``) until it does.

Sending: a due delivery is taken by the dispatcher (beat, every few seconds) with a fresh token
and a lease; the worker holding the token makes one attempt through the SSRF-safe chokepoint,
signed per Standard Webhooks, and records it. Failures back off exponentially (with jitter) up to
``EVENTS_MAX_ATTEMPTS``; ``EVENTS_PAUSE_AFTER_FAILURES`` failed attempts in a row pause the
endpoint. A paused endpoint's events are still recorded, and go out once its owner resumes it.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from agents_registry import queueing
from agents_registry.models import Participant
from marketplace import selectors as market_selectors
from marketplace.models import TaskEvent
from workers import events
from workers.exceptions import EndpointRefused, InvalidInput, RuntimeFailure
from workers.models import EventCursor, EventDelivery, EventFanout, EventSubscription
from workers.runtimes.http_safety import endpoint_validate, safe_request
from workers.runtimes.signing import webhook_headers, webhook_secret_generate
from workers.secrets import secret_decrypt, secret_encrypt

logger = logging.getLogger(__name__)

CURSOR = "task_events"
SETTLED = timedelta(seconds=60)  # longer than any market transaction takes to commit
FAN_OUT_BATCH = 500
DISPATCH_BATCH = 200
MAX_SUBSCRIPTIONS = 20  # per participant
SECRET_GRACE = timedelta(hours=24)
MAX_LOG_ENTRIES = 20
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "agent-marketplace-events/1"
SEND_TASK = "workers.event_delivery_send"


# --- subscriptions --------------------------------------------------------------------------------


def _clean(
    *, participant: Participant, url: str, event_types: list[str], description: str
) -> tuple[str, list[str], str]:
    errors: dict[str, list[str]] = {}
    url = (url or "").strip()
    try:
        endpoint_validate(url)
    except EndpointRefused as refused:
        errors["url"] = [str(refused)]
    chosen = list(dict.fromkeys(event_types or []))
    unknown = sorted(set(chosen) - set(events.EVENT_TYPES))
    if not chosen:
        errors["event_types"] = [f"Choose at least one of: {', '.join(events.EVENT_TYPES)}."]
    elif unknown:
        errors["event_types"] = [
            f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(events.EVENT_TYPES)}."
        ]
    elif "task.matched" in chosen and participant.kind != Participant.Kind.AGENT:
        errors["event_types"] = [
            "task.matched follows an agent's capability profile: subscribe one of your agents."
        ]
    description = (description or "").strip()
    if len(description) > 200:
        errors["description"] = ["At most 200 characters."]
    if errors:
        raise InvalidInput("; ".join(m for ms in errors.values() for m in ms), errors)
    return url, chosen, description


def subscription_create(
    *, participant: Participant, url: str, event_types: list[str], description: str = ""
) -> tuple[EventSubscription, str]:
    """Subscribe ``url`` to ``event_types`` for ``participant``; returns the subscription and its
    signing secret, shown once (``whsec_...``, as Standard Webhooks libraries expect)."""
    url, chosen, description = _clean(
        participant=participant, url=url, event_types=event_types, description=description
    )
    with transaction.atomic():
        # Counted under the participant's row lock, so two requests at once cannot pass the cap.
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        if EventSubscription.objects.filter(participant=participant).count() >= MAX_SUBSCRIPTIONS:
            raise InvalidInput(
                f"At most {MAX_SUBSCRIPTIONS} subscriptions per participant; delete one first."
            )
        secret = webhook_secret_generate()
        subscription = EventSubscription.objects.create(
            participant=participant,
            url=url,
            event_types=chosen,
            description=description,
            secret_encrypted=secret_encrypt(secret),
        )
    return subscription, secret


def subscription_update(
    *,
    subscription: EventSubscription,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
) -> EventSubscription:
    url, chosen, description = _clean(
        participant=subscription.participant,
        url=subscription.url if url is None else url,
        event_types=subscription.event_types if event_types is None else event_types,
        description=subscription.description if description is None else description,
    )
    EventSubscription.objects.filter(pk=subscription.pk).update(
        url=url, event_types=chosen, description=description
    )
    subscription.refresh_from_db()
    return subscription


def subscription_secret_rotate(*, subscription: EventSubscription) -> str:
    """A new signing secret, shown once. The previous one keeps signing (beside the new one)
    for a day, so the receiver can switch without refusing a delivery in between."""
    secret = webhook_secret_generate()
    with transaction.atomic():
        locked = EventSubscription.objects.select_for_update().get(pk=subscription.pk)
        EventSubscription.objects.filter(pk=locked.pk).update(
            secret_encrypted=secret_encrypt(secret),
            previous_secret_encrypted=locked.secret_encrypted,
            previous_secret_retires_at=timezone.now() + SECRET_GRACE,
        )
    return secret


def subscription_secrets_valid(subscription: EventSubscription) -> list[str]:
    """The secrets that sign now, newest first (two during a rotation's grace)."""
    secrets = [secret_decrypt(subscription.secret_encrypted)]
    retires = subscription.previous_secret_retires_at
    if subscription.previous_secret_encrypted and retires and retires > timezone.now():
        secrets.append(secret_decrypt(subscription.previous_secret_encrypted))
    return secrets


def subscription_pause(*, subscription: EventSubscription, reason: str = "") -> None:
    EventSubscription.objects.filter(pk=subscription.pk).update(
        status=EventSubscription.Status.PAUSED,
        paused_by="owner",
        paused_reason=(reason or "Paused by its owner.")[:500],
        paused_at=timezone.now(),
    )


def subscription_resume(*, subscription: EventSubscription) -> int:
    """Active again: the deliveries that waited go out now. How many were waiting."""
    now = timezone.now()
    with transaction.atomic():
        EventSubscription.objects.filter(pk=subscription.pk).update(
            status=EventSubscription.Status.ACTIVE,
            paused_by="",
            paused_reason="",
            paused_at=None,
            consecutive_failures=0,
        )
        return EventDelivery.objects.filter(
            subscription=subscription, status=EventDelivery.Status.PENDING
        ).update(next_attempt_at=now, attempt_token=None)


def subscription_delete(*, subscription: EventSubscription) -> None:
    subscription.delete()


def delivery_retry(*, delivery: EventDelivery) -> EventDelivery:
    """Send a failed delivery again (its attempts start over; the log keeps the old ones)."""
    EventDelivery.objects.filter(pk=delivery.pk, status=EventDelivery.Status.FAILED).update(
        status=EventDelivery.Status.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        attempt_token=None,
    )
    delivery.refresh_from_db()
    return delivery


def subscription_ping(*, subscription: EventSubscription) -> EventDelivery:
    """A ``ping`` event to this endpoint now, to check that it receives and verifies."""
    message_id = f"ping_{uuid.uuid4().hex}"
    now = timezone.now()
    return EventDelivery.objects.create(
        subscription=subscription,
        event_id=message_id,
        event_type=events.PING,
        payload={
            "id": message_id,
            "type": events.PING,
            "timestamp": now.isoformat(),
            "data": {"subscription_id": subscription.pk},
        },
        next_attempt_at=now,
    )


# --- fan-out: the market's timeline becomes deliveries -------------------------------------------


def _subscribed(participant_ids: set[int], event_type: str) -> list[EventSubscription]:
    """Active and paused subscriptions alike: a paused one's deliveries wait for its resumption."""
    return list(
        EventSubscription.objects.filter(
            participant_id__in=participant_ids, event_types__contains=[event_type]
        )
    )


def _deliveries_for(task_event: TaskEvent, *, matching: bool) -> list[EventDelivery]:
    task = market_selectors.task_with_parties(task_event.task_id)
    if task is None:
        return []
    notices = events.event_notices(task_event=task_event, task=task)
    if task_event.kind == "posted" and matching:
        subscribed = set(
            EventSubscription.objects.filter(
                event_types__contains=["task.matched"],
                participant__agent__isnull=False,
            ).values_list("participant__agent__id", flat=True)
        )
        notices += events.matched_notices(task=task, subscribed_agent_ids=subscribed)
    now = timezone.now()
    deliveries = []
    for notice in notices:
        message_id = events.event_id(task_event=task_event, event_type=notice.event_type)
        payload = events.event_payload(
            notice=notice, task_event=task_event, task=task, message_id=message_id
        )
        for subscription in _subscribed({notice.recipient_id}, notice.event_type):
            deliveries.append(
                EventDelivery(
                    subscription=subscription,
                    event_id=message_id,
                    event_type=notice.event_type,
                    task_ref=task.pk,
                    payload=payload,
                    next_attempt_at=now,
                )
            )
    return deliveries


def events_fan_out(*, limit: int = FAN_OUT_BATCH) -> int:
    """Turn the timeline events committed since the last pass into deliveries (and a revision
    requested of an A2A agent into its next run); how many deliveries were made. Idempotent,
    and a second pass running at the same time skips (the cursor's lock)."""
    EventCursor.objects.get_or_create(name=CURSOR)
    with transaction.atomic():
        cursor = EventCursor.objects.select_for_update(skip_locked=True).filter(name=CURSOR).first()
        if cursor is None:
            return 0  # another pass holds the cursor
        seen = EventFanout.objects.filter(task_event_id__gt=cursor.position)
        fresh = list(
            TaskEvent.objects.filter(pk__gt=cursor.position, kind__in=events.SOURCE_KINDS)
            .exclude(pk__in=seen.values("task_event_id"))
            .order_by("pk")[:limit]
        )
        made = 0
        if fresh and EventSubscription.objects.exists():
            matching = EventSubscription.objects.filter(
                event_types__contains=["task.matched"]
            ).exists()
            deliveries = [
                delivery
                for task_event in fresh
                for delivery in _deliveries_for(task_event, matching=matching)
            ]
            made = len(EventDelivery.objects.bulk_create(deliveries, ignore_conflicts=True))
        EventFanout.objects.bulk_create(
            [EventFanout(task_event_id=task_event.pk) for task_event in fresh],
            ignore_conflicts=True,
        )
        settled = TaskEvent.objects.filter(
            pk__gt=cursor.position, created_at__lt=timezone.now() - SETTLED
        ).aggregate(last=Max("pk"))["last"]
        if settled is not None:
            if len(fresh) == limit:  # a full batch: do not move past what it did not read
                settled = min(settled, fresh[-1].pk)
            EventFanout.objects.filter(task_event_id__lte=settled).delete()
            EventCursor.objects.filter(pk=cursor.pk).update(position=settled)
        return made


# --- sending --------------------------------------------------------------------------------------


def _attempt_lease() -> timedelta:
    return timedelta(seconds=settings.EVENTS_TIMEOUT_SECONDS + 30)


def deliveries_dispatch(*, limit: int = DISPATCH_BATCH) -> list[tuple[int, uuid.UUID]]:
    """Take the due deliveries of active subscriptions, each with a fresh token and a lease, and
    send their messages once this commits; returns (delivery id, token) pairs."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            EventDelivery.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(
                status=EventDelivery.Status.PENDING,
                next_attempt_at__lte=now,
                subscription__status=EventSubscription.Status.ACTIVE,
            )
            .order_by("next_attempt_at", "pk")[:limit]
        )
        taken = []
        for delivery in due:
            token = uuid.uuid4()
            delivery.attempt_token = token
            delivery.next_attempt_at = now + _attempt_lease()
            taken.append((delivery.pk, token))
        EventDelivery.objects.bulk_update(due, ["attempt_token", "next_attempt_at"])
        for delivery_id, token in taken:
            queueing.send_on_commit(
                SEND_TASK, kwargs={"delivery_id": delivery_id, "token": str(token)}
            )
    return taken


def events_dispatch() -> dict[str, int]:
    """Beat: fan out new events, then send what is due (new deliveries, retries, and attempts
    whose worker died)."""
    made = events_fan_out()
    return {"made": made, "sent": len(deliveries_dispatch())}


def retry_delay_seconds(attempt: int) -> float:
    """Exponential backoff with full jitter, so endpoints that failed together are not all
    retried in the same second."""
    ceiling = min(
        settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
        settings.EVENTS_RETRY_BACKOFF_SECONDS * (2 ** max(0, attempt - 1)),
    )
    return random.uniform(ceiling / 2, ceiling)


def event_delivery_attempt(*, delivery_id: int, token: uuid.UUID | str) -> str:
    """One attempt of one delivery by the holder of its token: ``"succeeded"``, ``"retrying"``,
    ``"failed"`` (gave up), or ``"skipped"`` (a stale or duplicate message: no effect)."""
    delivery = (
        EventDelivery.objects.select_related("subscription")
        .filter(pk=delivery_id, attempt_token=token, status=EventDelivery.Status.PENDING)
        .first()
    )
    if delivery is None:
        return "skipped"
    subscription = delivery.subscription
    if subscription.status != EventSubscription.Status.ACTIVE:
        return "skipped"  # paused meanwhile: resuming schedules it again
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **webhook_headers(
            secrets=subscription_secrets_valid(subscription),
            message_id=delivery.event_id,
            body=body,
        ),
    }
    started = time.monotonic()
    status_code, error = None, ""
    try:
        # Redirects are not followed: a receiver is one URL, and a redirect is a misconfiguration.
        response = safe_request(
            "POST",
            subscription.url,
            body=body,
            headers=headers,
            timeout=settings.EVENTS_TIMEOUT_SECONDS,
            max_response_bytes=MAX_RESPONSE_BYTES,
            max_redirects=0,
        )
        status_code = response.status
        if not 200 <= response.status < 300:
            error = f"The endpoint answered {response.status}."
    except (EndpointRefused, RuntimeFailure) as failure:
        error = str(failure)
    return _attempt_record(
        delivery,
        token=token,
        status_code=status_code,
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _attempt_record(
    delivery: EventDelivery,
    *,
    token: uuid.UUID | str,
    status_code: int | None,
    error: str,
    duration_ms: int,
) -> str:
    now = timezone.now()
    attempts = delivery.attempts + 1
    entry = {
        "attempt": attempts,
        "at": now.isoformat(),
        "status_code": status_code,
        "error": error[:500],
        "duration_ms": duration_ms,
    }
    changes: dict[str, Any] = {
        "attempts": attempts,
        "attempt_token": None,
        "attempt_log": [*delivery.attempt_log, entry][-MAX_LOG_ENTRIES:],
        "last_status_code": status_code,
        "last_error": error[:500],
    }
    if not error:
        outcome = "succeeded"
        changes.update(
            status=EventDelivery.Status.SUCCEEDED, delivered_at=now, next_attempt_at=None
        )
    elif attempts >= settings.EVENTS_MAX_ATTEMPTS:
        outcome = "failed"
        changes.update(status=EventDelivery.Status.FAILED, next_attempt_at=None)
    else:
        outcome = "retrying"
        changes["next_attempt_at"] = now + timedelta(seconds=retry_delay_seconds(attempts))
    subscriptions = EventSubscription.objects.filter(pk=delivery.subscription_id)
    with transaction.atomic():
        # Only the token's holder records: a message redelivered after the lease ran out (and the
        # delivery was taken again) changes nothing.
        if not EventDelivery.objects.filter(pk=delivery.pk, attempt_token=token).update(**changes):
            return "skipped"
        if not error:
            subscriptions.update(consecutive_failures=0, last_success_at=now)
            return outcome
        subscriptions.update(
            consecutive_failures=F("consecutive_failures") + 1, last_failure_at=now
        )
        limit = settings.EVENTS_PAUSE_AFTER_FAILURES
        paused = subscriptions.filter(
            status=EventSubscription.Status.ACTIVE, consecutive_failures__gte=limit
        ).update(
            status=EventSubscription.Status.PAUSED,
            paused_by="failures",
            paused_reason=f"Paused after {limit} failed attempts in a row; last: {error}"[:500],
            paused_at=now,
        )
        if paused:
            logger.warning("subscription %s paused: %s", delivery.subscription_id, error)
    return outcome
