"""Redis for the request path: the calls every API request makes (key versions, rate limits,
kept answers) on the thread's own connection, Lua scripts through them, and the versions that
``auth_cache`` and ``marketplace.read_cache`` keep answers under."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

TTL = 60  # seconds what is kept under a version lives even if the version never changes
_VERSION_LIFETIME = 86_400  # seconds; far beyond TTL, so an expired version is never mistaken


@functools.cache
def redis_client() -> redis.Redis:
    """The cache's Redis database as a plain client with this process's pool: for what Django's
    cache API cannot do in one round trip (versions, rate-limit counters)."""
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
