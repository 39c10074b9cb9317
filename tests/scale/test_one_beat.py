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


def whole(beat: nodes.Node) -> str:
    return beat.log.read_text(errors="replace")


def sent(beat: nodes.Node) -> int:
    return whole(beat).count(SENT)


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
            lambda: next((b for b in beats if SENT in whole(b)), None), timeout=40, interval=0.2
        )
        (second,) = [beat for beat in beats if beat is not first]
        assert LOCKED in whole(first)
        time.sleep(6)  # longer than the lock would last if nobody renewed it
        assert LOCKED not in whole(second) and SENT not in whole(second)
        assert second.process.poll() is None  # waiting, not failed
        queued = redis.Redis.from_url(_redis_db(12)).llen("celery")
        assert queued > 0

        # The lock vanishes under the holder (it expired while Redis was away): neither beat
        # exits, one of them takes the lock again, and again only one schedules.
        beat_state = redis.Redis.from_url(settings.CELERY_REDBEAT_REDIS_URL)
        assert beat_state.delete(f"{prefix}:lock") == 1
        time.sleep(4)
        assert all(beat.process.poll() is None for beat in beats)
        before = [sent(beat) for beat in beats]
        time.sleep(4)
        grew = [beat for beat, count in zip(beats, before, strict=True) if sent(beat) > count]
        assert len(grew) == 1, [beat.tail() for beat in beats]
        (holder,) = grew
        (waiting,) = [beat for beat in beats if beat is not holder]

        holder.kill()
        count = sent(waiting)
        wait_until(lambda: sent(waiting) > count, timeout=30, interval=0.2)
    finally:
        for beat in beats:
            beat.stop()
        redis.Redis.from_url(_redis_db(12)).flushdb()
        beat_state = redis.Redis.from_url(settings.CELERY_REDBEAT_REDIS_URL)
        for key in beat_state.scan_iter(f"{prefix}*"):
            beat_state.delete(key)
