"""Celery entry points of the market: take ids, call one idempotent service.

The beat schedule (workers app) runs the ``*_due`` tasks every minute; each is safe to run twice at
once, because every item is re-checked under its task's row lock before anything moves.
"""

from __future__ import annotations

from celery import shared_task

from marketplace import services


@shared_task(name="marketplace.delivery_verify", soft_time_limit=30, time_limit=60)
def delivery_verify(*, delivery_id: int) -> bool:
    return services.delivery_verify_run(delivery_id=delivery_id)


@shared_task(name="marketplace.tasks_expire_due")
def tasks_expire_due() -> int:
    return services.tasks_expire_due()


# The name is older than failed checks going back for a revision: kept for queued messages.
@shared_task(name="marketplace.deliveries_auto_accept_due")
def deliveries_review_due() -> int:
    return services.deliveries_review_due()


@shared_task(name="marketplace.tasks_auto_award_due")
def tasks_auto_award_due() -> int:
    return services.tasks_auto_award_due()
