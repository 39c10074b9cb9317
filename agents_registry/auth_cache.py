"""API-key lookups kept in each process while none of the rows they read has changed.

Every API request authenticates, and the lookup (a prepared statement, then a key, participant,
user and agent built from its row) cost more than the task detail's whole query. A kept lookup is
checked instead against Redis, in one round trip: each row it read has a version in Redis,
``auth:<model>:<pk>``, which :func:`holder_changed` replaces whenever the row changes, at once and
again when the change commits. A lookup is kept with the versions read *before* its database
read, so a change that commits after that read never goes unnoticed, and revoking a key or
suspending an agent takes effect on the next request in every process.

What changes the rows calls :func:`holder_changed`: the signals in ``apps.py`` for saves and
deletes, and the services that write with ``QuerySet.update`` (revoking a key, an agent's status).
The agent's counters (open tasks, outcomes) are not read by the lookup but loaded on first use, so
the market's award and outcome writes need not call it. While Redis cannot be read, nothing kept is
used and keys are looked up in the database; a change to a row a lookup reads is refused until
Redis takes its new versions (:func:`holder_changed`, and ``pre_save`` / ``pre_delete`` through
:func:`row_about_to_change`). Should only the versions written after
the commit fail to reach Redis, a kept lookup still lives at most ``TTL`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from django.db import transaction
from django.db.models import Model

from agents_registry.redis_calls import TTL, redis_command, replace_versions

logger = logging.getLogger(__name__)

SIZE = 10_000  # kept lookups per process; past it, they are all dropped


def version_key(model: type[Model], pk: Any) -> str:
    return f"auth:{model._meta.label_lower}:{pk}"


def holder_changed(*rows: tuple[type[Model], Any]) -> None:
    """Rows (model, pk) that a key lookup reads have changed: lookups kept anywhere that read
    them are dropped, now (for this transaction's own later requests) and once it commits (for
    requests that read the rows in between).

    Inside a transaction Redis must take the first new versions, or the change is refused
    (``redis.RedisError`` rolls the transaction back; the API answers 503): a revoked key or a
    suspended agent written while other processes keep the old row, with Redis back later under
    the old versions, would be accepted there until the TTL. Outside one the change has already
    committed, so a failure is only logged."""
    keys = [version_key(model, pk) for model, pk in rows if pk is not None]
    if not keys:
        return
    replace_versions(keys, required=transaction.get_connection().in_atomic_block)
    transaction.on_commit(lambda: replace_versions(keys))


# What a lookup never decides on: a save of only these leaves kept lookups as they are (a web
# login stamps last_login, and must work while Redis is out of reach).
_IRRELEVANT_FIELDS = frozenset({"last_login"})


def _irrelevant(instance: Model, update_fields: Any) -> bool:
    # _state.adding (documented with Model.from_db): a row not yet saved, whatever its pk says
    # (API keys choose theirs before the insert).
    adding = instance._state.adding
    return adding or bool(update_fields and set(update_fields) <= _IRRELEVANT_FIELDS)


def row_about_to_change(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """The receiver of ``pre_save`` and ``pre_delete``: Redis takes the row's new version before
    anything is written, or the save is refused (``redis.RedisError``), inside a transaction or
    not: a save outside one commits before ``post_save`` could refuse it."""
    if not _irrelevant(instance, kwargs.get("update_fields")):
        replace_versions([version_key(sender, instance.pk)], required=True)


def row_saved_or_deleted(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """The receiver of ``post_save`` and ``post_delete`` for the rows a lookup reads. A new row
    was never looked up, so nothing kept can be older than it."""
    update_fields = kwargs.get("update_fields")
    if kwargs.get("created") or (update_fields and set(update_fields) <= _IRRELEVANT_FIELDS):
        return
    holder_changed((sender, instance.pk))


class LookupCache:
    """Rows of ``fetch(prefix)`` kept per key prefix, with the versions of the rows they came
    from. ``watch(row)`` names those rows as (model, pk) pairs; a key never moves to another
    holder, so they are learnt from the first lookup and the row is kept from the second."""

    def __init__(
        self,
        fetch: Callable[[str], tuple[Any, ...] | None],
        watch: Callable[[tuple[Any, ...]], Sequence[tuple[type[Model], Any]]],
    ) -> None:
        self._fetch = fetch
        self._watch = watch
        self._watched: dict[str, list[str]] = {}
        self._kept: dict[str, tuple[list[Any], tuple[Any, ...], float]] = {}

    def get(self, prefix: str) -> tuple[Any, ...] | None:
        watched = self._watched.get(prefix)
        versions = None
        if watched is not None:
            try:
                versions = redis_command("MGET", *watched)
            except redis.RedisError:
                logger.warning("Redis is out of reach: API keys are looked up in the database")
            kept = self._kept.get(prefix)
            if (
                kept is not None
                and versions is not None
                and kept[0] == versions
                and time.monotonic() - kept[2] < TTL
            ):
                return kept[1]
        row = self._fetch(prefix)
        if row is None:
            return None
        if versions is not None:
            if len(self._kept) >= SIZE:
                self._kept.clear()
            self._kept[prefix] = (versions, row, time.monotonic())
        elif watched is None:
            if len(self._watched) >= SIZE:
                self._watched.clear()
            self._watched[prefix] = [
                version_key(model, pk) for model, pk in self._watch(row) if pk is not None
            ]
        return row

    def forget(self, prefix: str) -> None:
        """Drop this process's kept row of ``prefix`` (its next lookup reads the database)."""
        self._kept.pop(prefix, None)
