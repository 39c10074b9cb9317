"""Celery entry points of the workers app. Tasks are thin: they unpack ids and call services."""

from __future__ import annotations

from celery import Task, shared_task
from django.core.cache import cache

from workers import services
from workers.services import outbox, subscriptions


@shared_task(name="workers.echo")
def echo(*, key: str, value: str) -> None:
    """Writes ``value`` under ``key`` in the cache: proves a web request reaches a real worker."""
    cache.set(key, value, timeout=300)


@shared_task(name="workers.execution_run", bind=True)
def execution_run_task(self: Task, *, execution_id: int, at_once: bool = False) -> str:
    """One attempt of an execution. Safe to receive twice (the claim lets one through); time
    limits come per message from the agent (``services.execution_enqueue``). A message that
    comes back after its worker died is marked redelivered: it never runs ``at_once`` (see
    ``services.execution_run``)."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return services.execution_run(execution_id=execution_id, at_once=at_once and not redelivered)


@shared_task(name="workers.executions_reap")
def executions_reap_task() -> dict[str, int]:
    """Beat: re-queue executions whose lease expired; fail them at the attempt limit."""
    return services.executions_reap()


@shared_task(name="workers.outbox_relay")
def outbox_relay_task() -> dict[str, int]:
    """Beat: send the outbox's messages the broker did not take (see ``services.outbox``)."""
    return outbox.outbox_relay_round()


@shared_task(name="workers.hosted_bids_place")
def hosted_bids_place_task(*, task_id: int) -> int:
    """After a task is posted: the matching hosted agents bid on it (idempotent)."""
    return len(services.hosted_bids_place(task_id=task_id))


@shared_task(name="workers.hosted_bids_retry")
def hosted_bids_retry_task() -> int:
    """Beat, and after an accepted delivery: hosted agents bid on open tasks they missed."""
    return services.hosted_bids_retry()


@shared_task(name="workers.skill_distill")
def skill_distill_task(*, task_id: int) -> int | None:
    """After an accepted delivery: the task's experience skill (idempotent)."""
    version = services.skill_distill_from_task(task_id=task_id)
    return version.pk if version is not None else None


@shared_task(name="workers.noop")
def noop_task(*, counter_key: str = "") -> None:
    """Does nothing but count itself (one Redis INCR): the bare-Celery baseline of
    bench/executions.py, which needs to know when the last one ran."""
    if counter_key:
        cache.incr(counter_key)


@shared_task(name="workers.events_dispatch")
def events_dispatch_task() -> dict[str, int]:
    """Beat: fan new market events out to subscriptions and send the due deliveries."""
    return subscriptions.events_dispatch()


@shared_task(name="workers.event_delivery_send")
def event_delivery_send_task(*, delivery_id: int, token: str) -> str:
    """One attempt of one delivery, by the holder of its token (a duplicate does nothing)."""
    return subscriptions.event_delivery_attempt(delivery_id=delivery_id, token=token)
