"""API rate limits as sliding-window counters in Redis, one round trip per request.

DRF's own throttles keep every request's timestamp in a list stored in the cache: a read and a write
of the whole pickled list per request, which cost more than the task detail query. Here each window
is one integer: the request increments the current window's counter and reads the previous one in
one transaction, and the estimate weights the previous window by how much of it still overlaps the
sliding window (the approximation Cloudflare and others use; exact for steady traffic, never more
than the limit for bursts). A refused request is not counted, so a client that waits as told gets
through.

While Redis is out of reach the same windows are counted in this process's memory instead
(:class:`ProcessWindows`): each web process then enforces the limit on its own, so a client may
get up to the limit times the number of processes, but the API keeps answering (README, "When
Redis is down").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from rest_framework import throttling

from core.redis_calls import RedisScript, redis_client

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView


# Count this request in each throttle's window (created to live two windows: current, then
# previous) and read each previous window's count, atomically and in one round trip. KEYS come in
# pairs (current, previous), ARGV holds each pair's lifetime.
_COUNT = """
local counts = {}
for i = 1, #KEYS, 2 do
    redis.call('SET', KEYS[i], 0, 'EX', ARGV[(i + 1) / 2], 'NX')
    counts[#counts + 1] = redis.call('INCR', KEYS[i])
    counts[#counts + 1] = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
end
return counts
"""


_count = RedisScript(_COUNT)

logger = logging.getLogger(__name__)


class ProcessWindows:
    """``_COUNT`` and the refusal's decrement on this process's own counters: the fallback while
    Redis is out of reach. Counters expire as the Redis keys would."""

    SIZE = 100_000  # counters kept; past it the expired ones are dropped

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def _live(self, key: str, now: float) -> int:
        count, expires = self._counts.get(key, (0, now))
        return count if expires > now else 0

    def count(self, keys: list[str], lifetimes: Sequence[float]) -> list[int]:
        now = time.monotonic()
        counts: list[int] = []
        with self._lock:
            if len(self._counts) >= self.SIZE:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            for index in range(0, len(keys), 2):
                current, previous = keys[index], keys[index + 1]
                count, expires = self._counts.get(current, (0, 0.0))
                if expires <= now:
                    count, expires = 0, now + lifetimes[index // 2]
                self._counts[current] = (count + 1, expires)
                counts += [count + 1, self._live(previous, now)]
        return counts

    def uncount(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                count, expires = self._counts.get(key, (0, 0.0))
                if count:
                    self._counts[key] = (count - 1, expires)


process_windows = ProcessWindows()


def check_throttles(throttles: list[Any], request: Request, view: APIView) -> list[float | None]:
    """What DRF's ``check_throttles`` loop does, with every sliding window counted in one round
    trip: the waits of the throttles that refuse the request (empty when all allow it). A refusing
    window does not count the request; the others do."""
    waits: list[float | None] = []
    counted: list[tuple[SlidingWindowThrottle, str, str, float]] = []
    now = time.time()
    for throttle in throttles:
        if not isinstance(throttle, SlidingWindowThrottle):
            if not throttle.allow_request(request, view):
                waits.append(throttle.wait())
            continue
        key = throttle.get_cache_key(request, view) if throttle.rate is not None else None
        if key is not None:
            number, into = divmod(now, throttle.duration)
            counted.append((throttle, f"{key}:{int(number)}", f"{key}:{int(number) - 1}", into))
    if not counted:
        return waits
    keys = [key for _, current, previous, _ in counted for key in (current, previous)]
    lifetimes = [2 * throttle.duration for throttle, *_ in counted]
    in_redis = True
    try:
        counts = _count(keys=keys, args=lifetimes)
    except redis.RedisError:
        logger.warning("Redis is out of reach: rate limits are counted in this process")
        in_redis = False
        counts = process_windows.count(keys, lifetimes)
    refused = []
    for index, (throttle, current, _, into) in enumerate(counted):
        count, before = counts[2 * index], counts[2 * index + 1]
        window = throttle.duration
        if before * (1 - into / window) + count > throttle.num_requests:
            refused.append(current)
            throttle.wait_seconds = throttle._wait(count - 1, before, into, window)
            waits.append(throttle.wait_seconds)
    if refused and in_redis:
        try:
            with redis_client().pipeline(transaction=False) as pipe:
                for key in refused:
                    pipe.decr(key)
                pipe.execute()
        except redis.RedisError:  # the refused request stays counted: a client waits longer
            logger.warning("Redis is out of reach: a refused request stays counted")
    elif refused:
        process_windows.uncount(refused)
    return waits


class SlidingWindowThrottle(throttling.SimpleRateThrottle):
    """Counts in Redis instead of DRF's timestamp lists; subclasses name the scope and the key.
    :func:`check_throttles` counts several at once."""

    wait_seconds: float = 0.0
    # SimpleRateThrottle's __init__ sets these from the rate (None without one: never read then).
    num_requests: int
    duration: int

    def allow_request(self, request: Request, view: APIView) -> bool:
        return not check_throttles([self], request, view)

    def _wait(self, count: int, before: int, into: float, window: int) -> float:
        """Seconds until a request fits: the estimate falls as the previous window slides out of
        this one, then as this one slides out of the next."""
        room = self.num_requests - 1  # what may count beside the request itself
        if before and count <= room:
            return max(0.0, (1 - (room - count) / before) * window - into)
        fraction = max(0.0, 1 - room / count) if count else 0.0
        return window - into + fraction * window

    def wait(self) -> float:
        return self.wait_seconds


class AnonRateThrottle(SlidingWindowThrottle):
    scope = "anon"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserRateThrottle(SlidingWindowThrottle):
    """Per Django user, or per agent for an agent's key (agents have no Django user)."""

    scope = "user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        user = request.user
        if not (user and user.is_authenticated):
            return None
        ident = user.pk if user.pk is not None else str(user)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ParticipantWriteThrottle(SlidingWindowThrottle):
    """Writes per participant (agents share no Django user, so the user throttle cannot tell two
    agents behind one address apart)."""

    scope = "market_write"

    def get_rate(self) -> str:
        return settings.MARKET_WRITE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        viewer = getattr(view, "viewer", None)
        if viewer is None or viewer.participant is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": viewer.participant.pk}
