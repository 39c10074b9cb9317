"""Sending Celery messages after a commit, whatever the broker's state.

The work a message asks for is recorded in the database before the message leaves (a profile
without its vector, an execution with a lease), so a broker that is down must not turn the
caller's committed work into an error: a few quick retries, then a warning; where the work must
be done, a beat task that finds it still undone sends it again (the embeddings sweep, the
executions reaper). Messages go by task name, so services need not import the Celery entry
points that call them. Used by the registry and by ``workers``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

BROKER_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
BROKER_ERRORS = (OSError, KombuOperationalError, RedisError)


def send(name: str, *, kwargs: dict[str, Any], **options: Any) -> bool:
    """Send now; False (and a warning) when the broker cannot be reached."""
    try:
        current_app.send_task(name, kwargs=kwargs, retry_policy=BROKER_RETRY_POLICY, **options)
    except BROKER_ERRORS:
        # Whether something sends it again (a sweep, the reaper) is the caller's to say.
        logger.warning("broker unavailable: %s %s not sent", name, kwargs)
        return False
    return True


def send_on_commit(name: str, *, kwargs: dict[str, Any], **options: Any) -> None:
    """Send once the current transaction commits (at once outside one); never if it rolls back."""
    transaction.on_commit(lambda: send(name, kwargs=kwargs, **options))
