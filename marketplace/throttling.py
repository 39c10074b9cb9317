"""API rate limits as sliding-window counters in Redis, one round trip per request.

DRF's own throttles keep every request's timestamp in a list stored in the cache: a read and a write
of the whole pickled list per request (1.8 ms of the 2-core bench machine's CPU per API call, more
than the task detail query). Here each window is one integer: the request increments the current
window's counter and reads the previous one in one transaction, and the estimate weights the
previous window by how much of it still overlaps the sliding window (the approximation Cloudflare
and others use; exact for steady traffic, never more than the limit for bursts). A refused request
is not counted, so a client that waits as told gets through.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import throttling

from agents_registry.redis_calls import RedisScript, redis_client

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
    counts = _count(
        keys=[key for _, current, previous, _ in counted for key in (current, previous)],
        args=[2 * throttle.duration for throttle, *_ in counted],
    )
    refused = []
    for index, (throttle, current, _, into) in enumerate(counted):
        count, before = counts[2 * index], counts[2 * index + 1]
        window = throttle.duration
        if before * (1 - into / window) + count > throttle.num_requests:
            refused.append(current)
            throttle.wait_seconds = throttle._wait(count - 1, before, into, window)
            waits.append(throttle.wait_seconds)
    if refused:
        with redis_client().pipeline(transaction=False) as pipe:
            for key in refused:
                pipe.decr(key)
            pipe.execute()
    return waits


class SlidingWindowThrottle(throttling.SimpleRateThrottle):
    """Counts in Redis instead of DRF's timestamp lists; subclasses name the scope and the key.
    :func:`check_throttles` counts several at once."""

    wait_seconds: float = 0.0

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
