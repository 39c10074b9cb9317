"""The API's task list and task detail kept in Redis while the market's data is unchanged.

Agents poll these two endpoints far more often than anything changes, and each answer costs
PostgreSQL a statement (the list: a count of up to 1,000 rows and a page of JSON). An answer is
kept under the market's *read version*, a value in Redis that :func:`market_changed` replaces when
a transaction that wrote tasks, bids, dependencies or participants commits (``apps.py`` connects
it to their saves and deletes; the services that write with ``QuerySet.update`` or ``bulk_create``
call it). A reader reads the version first, in the same round trip as the kept answer, and keeps
what it then computes under that version: a change that commits after its database read replaces
the version afterwards, so nothing older than the data is served past that point. A transaction
that has changed the market reads around the cache (its own writes are not committed yet), and
answers live at most ``TTL`` seconds in case a new version could not be written.
``MARKET_READ_CACHE=false`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction

from agents_registry.redis_calls import TTL, RedisScript, redis_command, replace_versions

logger = logging.getLogger(__name__)

VERSION_KEY = "reads:version"

# The version, and the answer kept under it (empty when there is none), in one round trip.
_READ = """
local version = redis.call('GET', KEYS[1]) or ''
return {version, redis.call('GET', ARGV[1] .. version) or ''}
"""


_read = RedisScript(_READ)


def new_version() -> None:
    replace_versions([VERSION_KEY])


def market_changed(**kwargs: Any) -> None:
    """Kept answers end when the current transaction commits (at once outside one): once per
    transaction however many rows it writes. Also the receiver of the models' signals."""
    if not _changed_in_this_transaction():
        transaction.on_commit(new_version)


def _changed_in_this_transaction() -> bool:
    return any(callback is new_version for _, callback, _ in connection.run_on_commit)


def kept(key: str, compute: Callable[[], str | None]) -> str | None:
    """The answer ``compute`` gives, kept under the read version; ``key`` names the question
    (who asks included)."""
    if not settings.MARKET_READ_CACHE or _changed_in_this_transaction():
        return compute()
    prefix = "reads:" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest() + ":"
    try:
        version, found = _read(keys=[VERSION_KEY], args=[prefix])
    except redis.RedisError:
        logger.warning("Redis is out of reach: the API reads the database", exc_info=True)
        return compute()
    if found:
        return None if found == b"null" else found.decode()
    answer = compute()
    try:
        redis_command(
            "SET", prefix + version.decode(), "null" if answer is None else answer, "EX", TTL
        )
    except redis.RedisError:
        logger.warning("Redis is out of reach: an API answer was not kept", exc_info=True)
    return answer
