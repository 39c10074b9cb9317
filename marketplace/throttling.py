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

import functools
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import throttling

from agents_registry.auth_cache import redis_client

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView


# Count this request in its window (created to live two windows: current, then previous) and
# read the previous window's count, atomically and in one round trip.
_COUNT = """
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
return {redis.call('INCR', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


@functools.cache
def _count() -> Any:
    return redis_client().register_script(_COUNT)


class SlidingWindowThrottle(throttling.SimpleRateThrottle):
    """Counts in Redis instead of DRF's timestamp lists; subclasses name the scope and the key."""

    wait_seconds: float = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = time.time()
        window = self.duration
        number, into = divmod(now, window)
        current, previous = f"{key}:{int(number)}", f"{key}:{int(number) - 1}"
        count, before = _count()(keys=[current, previous], args=[2 * window])
        if before * (1 - into / window) + count <= self.num_requests:
            return True
        redis_client().decr(current)
        self.wait_seconds = self._wait(count - 1, before, into, window)
        return False

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
