"""One beat at a time, enforced: of two beat processes started together only one takes the lock
and schedules; killed hard, it is replaced by the other once its lock expires."""

from __future__ import annotations

import os
import time

import redis
from django.conf import settings

from tests.conftest import wait_until
from tests.scale import nodes
from tests.scale.test_roles import _redis_db, broker_url

SENT = "Scheduler: Sending due task"
LOCKED = "beat: Acquired lock"


def test_two_beats_schedule_from_one_at_a_time() -> None:
    broker = broker_url(12)  # a queue of its own: nothing here is meant to run
    prefix = f"redbeat-test-{os.getpid()}"
    beats = []
    for name in ("beat-a", "beat-b"):
        env = nodes.node_environment(
            settings.DATA_DIR / "scale" / name,
            DATABASE_URL=settings.DATABASE_URL,
            REDIS_URL=settings.REDIS_URL,
            BROKER_URL=broker,
            BEAT_KEY_PREFIX=prefix,
            BEAT_LOOP_SECONDS="1",  # the lock lasts 4 s unless its holder renews it
        )
        beats.append(nodes.start_beat(name, env))
    try:
        first = wait_until(
            lambda: next((b for b in beats if SENT in b.tail()), None), timeout=40, interval=0.2
        )
        (second,) = [beat for beat in beats if beat is not first]
        assert LOCKED in first.tail()
        time.sleep(6)  # longer than the lock would last if nobody renewed it
        assert LOCKED not in second.tail() and SENT not in second.tail()
        assert second.process.poll() is None  # waiting, not failed
        queued = redis.Redis.from_url(_redis_db(12)).llen("celery")
        assert queued > 0

        first.kill()
        wait_until(lambda: SENT in second.tail(), timeout=30, interval=0.2)
        assert LOCKED in second.tail()
    finally:
        for beat in beats:
            beat.stop()
        redis.Redis.from_url(_redis_db(12)).flushdb()
        beat_state = redis.Redis.from_url(_redis_db(int(settings.REDIS_DATABASE_BASE) + 3))
        for key in beat_state.scan_iter(f"{prefix}*"):
            beat_state.delete(key)
