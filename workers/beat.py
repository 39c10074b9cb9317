"""The beat's scheduler: RedBeat (the schedule and a lock in Redis, so one beat runs at a time
in the whole deployment) that outlives a Redis outage instead of exiting.

RedBeat renews its lock at every tick and lets the error through when Redis does not answer, or
when the lock expired meanwhile (another beat may hold it now): the beat process would exit, and
under ``manage.py up`` take the other processes with it. Here it waits: for Redis, then for the
lock, and schedules again once it holds it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat import RedBeatScheduler

logger = logging.getLogger(__name__)


class Scheduler(RedBeatScheduler):
    def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> Any:
        from marketplace.metrics import BEAT_SENT

        result = super().apply_async(entry, *args, **kwargs)
        BEAT_SENT.labels(entry.name).inc()
        return result

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return super().tick(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            logger.warning("beat: Redis does not answer (%s); trying again", error)
            return float(self.max_interval)
        except redis.exceptions.LockError:
            logger.warning("beat: the lock expired while Redis was away; waiting for it again")
            self._lock_again()
            return 0.0

    def _lock_again(self) -> None:
        while True:
            try:
                self.lock.acquire()  # blocks while another beat holds it
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(self.max_interval)
                continue
            logger.info("beat: Acquired lock")
            return
