"""The API's task list and task detail kept in Redis while the market's data is unchanged.

Agents poll these two endpoints far more often than anything changes. An answer is kept under
the market's *read version*, which the database itself moves when a transaction that writes the
tables these reads show commits (``models.ReadVersion``, its triggers in migration
``0007_read_version_triggers``): a save, ``QuerySet.update``, ``prepared.update_row`` or raw SQL
alike, with nothing for a writer to remember. A reader reads the version from the database
first, then the answer kept under it from Redis (with Redis's own part of the version, which
:func:`new_version` changes after a flush), and keeps what it then computes under that version:
the data it computes from is at least as new as the version, so nothing older than the data is
ever served under a version. A transaction that has written those tables reads around the cache
(its own writes are not committed yet; the version's statement tells), and answers live at most
``TTL`` seconds. ``MARKET_READ_CACHE=false`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection

from core.prepared import derived_from_models, fetch_row
from core.redis_calls import RedisScript, redis_command
from marketplace.models import ReadVersion

logger = logging.getLogger(__name__)

TTL = 60  # seconds what is kept under a version lives even if the version never changes
_VERSION_LIFETIME = 86_400  # seconds; far beyond TTL, so an expired version is never mistaken


@derived_from_models
def _version_sql() -> str:
    table = connection.ops.quote_name(ReadVersion._meta.db_table)
    version = connection.ops.quote_name(ReadVersion._meta.get_field("version").column)
    # The setting is the triggers' mark that this transaction has written what reads show.
    return (
        f"SELECT coalesce(sum({version}), 0)::text,"  # noqa: S608
        " current_setting('market.read_version_moved', true) IS NOT DISTINCT FROM 'on'"
        f" FROM {table}"
    )


VERSION_KEY = "reads:version"

# Redis's own part of the version (changed only by :func:`new_version`), and the answer kept
# under both, in one round trip.
_READ = """
local version = redis.call('GET', KEYS[1]) or ''
return {version, redis.call('GET', ARGV[1] .. version) or ''}
"""


_read = RedisScript(_READ)

_REPLACE = RedisScript(
    "for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'EX', ARGV[2]) end"
)


def replace_versions(keys: list[str]) -> None:
    """New values for these version keys, in one round trip: what was kept under the old ones
    is out of reach. A Redis that does not take them is logged, not raised: the change has been
    made."""
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


def new_version() -> None:
    """Every kept answer out of reach: for a database emptied by a flush, whose read version
    starts again from zero."""
    replace_versions([VERSION_KEY])


def answer_kept_or_computed(key: str, compute: Callable[[], str | None]) -> str | None:
    """The answer ``compute`` gives, kept under the read version; ``key`` names the question
    (who asks included)."""
    if not settings.MARKET_READ_CACHE:
        return compute()
    row = fetch_row(_version_sql(), [])
    assert row is not None  # an aggregate without GROUP BY has one row
    database_version, written_here = row
    if written_here:
        return compute()
    prefix = (
        f"reads:{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}:{database_version}:"
    )
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
