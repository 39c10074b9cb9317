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
the market's award and outcome writes need not call it. Should a version fail to reach Redis, a kept
lookup still lives at most ``TTL`` seconds; while Redis cannot be read, nothing kept is used.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Model

logger = logging.getLogger(__name__)

TTL = 60.0  # seconds a kept lookup lives even if no version changed
SIZE = 10_000  # kept lookups per process; past it, they are all dropped
_VERSION_LIFETIME = 86_400  # seconds; far beyond TTL, so an expired version is never mistaken


@functools.cache
def redis_client() -> redis.Redis:
    """The cache's Redis database as a plain client with this process's pool: for what Django's
    cache API cannot do in one round trip (versions here, rate-limit counters)."""
    return redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])


_own = threading.local()


def redis_command(*args: Any) -> Any:
    """One command on this thread's own connection to ``redis_client()``'s database, without the
    client's pool, retry and instrumentation layers: they doubled the cost of each of the three
    calls an API request makes (bench/api.py). A broken connection is replaced and the command
    sent once more; errors Redis answers with are raised as the client raises them."""
    for attempt in (1, 2):
        connection = getattr(_own, "connection", None)
        if connection is None or _own.pid != os.getpid():  # none yet, or a forked parent's
            connection = redis_client().connection_pool.make_connection()
            _own.connection, _own.pid = connection, os.getpid()
        try:
            connection.send_command(*args)
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            _own.connection = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class RedisScript:
    """A Lua script run through :func:`redis_command` (by its SHA once Redis has it)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)

    def __call__(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        try:
            return redis_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return redis_command("EVAL", self.text, len(keys), *keys, *args)


def version_key(model: type[Model], pk: Any) -> str:
    return f"auth:{model._meta.label_lower}:{pk}"


def holder_changed(*rows: tuple[type[Model], Any]) -> None:
    """Rows (model, pk) that a key lookup reads have changed: lookups kept anywhere that read
    them are dropped, now (for this transaction's own later requests) and once it commits (for
    requests that read the rows in between)."""
    keys = [version_key(model, pk) for model, pk in rows if pk is not None]
    if not keys:
        return
    replace_versions(keys)
    transaction.on_commit(lambda: replace_versions(keys))


def row_saved_or_deleted(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """The receiver of ``post_save`` and ``post_delete`` for the rows a lookup reads."""
    holder_changed((sender, instance.pk))


_REPLACE = RedisScript(
    "for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'EX', ARGV[2]) end"
)


def replace_versions(keys: list[str]) -> None:
    """New values for these version keys, in one round trip: what was kept under the old ones
    is out of reach (here and in ``marketplace.read_cache``)."""
    try:
        _REPLACE(keys, [uuid.uuid4().hex, _VERSION_LIFETIME])
    except redis.RedisError:
        logger.warning(
            "What other processes keep under %s may stay for up to %d s: Redis did not take the"
            " new versions",
            keys,
            TTL,
            exc_info=True,
        )


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

    def clear(self) -> None:
        self._watched.clear()
        self._kept.clear()
