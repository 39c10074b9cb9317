"""Redis for the request path: the calls every request may make (rate limits, kept answers)
through one client per process and its connection pool, and Lua scripts through it.

The client is redis-py's own: its pool hands each command a connection and takes it back whatever
happens, its retry replaces a broken connection (a Redis restart, a killed connection), and the
timeouts keep a Redis that does not answer from holding a request for long. A Redis that is down
makes these calls raise ``redis.RedisError`` quickly; their callers decide what a request does then
(README, "When Redis is down").

redis-py internals relied on: none, only its public client API (``Redis.from_url`` with
``Retry``, ``retry_on_error`` and ``health_check_interval``, ``execute_command``,
``register_script``). The behaviours it leans on fail by name on an upgrade that changes one: a
forked child gets connections of its own (``tests/core/test_internals.py``), a connection broken or
killed is replaced and a script Redis lost is loaded again (``tests/core/test_redis_calls.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# A request waits at most about this long for a Redis that is not answering, per command.
SOCKET_TIMEOUT = 1.0
# Retries after a connection error or timeout, each on a fresh connection from the pool.
RETRIES = 2


@functools.cache
def redis_client() -> redis.Redis:
    """The cache's Redis database as a client with this process's pool: for what Django's cache
    API cannot do in one round trip (versions, rate-limit counters). The pool is made again in a
    forked child (redis-py checks the pid), so a forked worker never shares a parent's socket."""
    return redis.Redis.from_url(
        settings.CACHES["default"]["LOCATION"],
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        # A connection idle this long is checked with a PING before use: after a Redis restart
        # the first command does not fail on a socket the server closed long ago.
        health_check_interval=30,
    )


def redis_command(*args: Any) -> Any:
    """One command through ``redis_client()``: errors Redis answers with, and a Redis out of
    reach after the client's retries, are raised as the client raises them."""
    return redis_client().execute_command(*args)


class RedisScript:
    """A Lua script run through :func:`redis_client` (by its SHA once Redis has it; loaded again
    when Redis lost it, e.g. after a restart)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def _script(self) -> Any:
        return redis_client().register_script(self.text)

    def __call__(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        return self._script(keys=list(keys), args=list(args), client=redis_client())
