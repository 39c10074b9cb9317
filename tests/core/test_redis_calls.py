"""The request path's Redis calls through redis-py's own client and pool: a Redis that went away
and came back is used again at once, however many calls failed meanwhile, and ``/readyz`` says
what the API's requests see."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from core import redis_calls
from tests.own_redis import OwnRedis


def test_calls_work_again_once_redis_is_back_after_many_failures(own_redis: OwnRedis) -> None:
    # On a thread of its own: nothing this thread did before may stand in for the pool.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(_fail_many_times_then_recover, own_redis).result()


def _fail_many_times_then_recover(own_redis: OwnRedis) -> None:
    redis_calls.redis_command("SET", "test:back", "1")
    own_redis.kill()
    for _ in range(150):  # far more than the pool's size: none of them may leak a connection
        with pytest.raises(redis.RedisError):
            redis_calls.redis_command("GET", "test:back")
    own_redis.start()
    assert redis_calls.redis_command("SET", "test:back", "2") in (True, b"OK")
    assert redis_calls.redis_command("GET", "test:back") == b"2"
    script = redis_calls.RedisScript("return ARGV[1] .. redis.call('GET', KEYS[1])")
    assert script(["test:back"], ["x"]) == b"x2"  # loaded into the new server


def test_a_connection_killed_by_redis_is_replaced(own_redis: OwnRedis) -> None:
    redis_calls.redis_command("SET", "test:own-connection", "1")
    client = redis_calls.redis_client()
    client.client_kill_filter(_type="normal", skipme=False)  # every connection, the pool's too
    assert redis_calls.redis_command("GET", "test:own-connection") == b"1"
    script = redis_calls.RedisScript("return ARGV[1] .. redis.call('GET', KEYS[1])")
    client.script_flush()
    assert script(["test:own-connection"], ["x"]) == b"x1"  # loaded again when Redis lost it
    assert script(["test:own-connection"], ["y"]) == b"y1"


def test_readyz_says_redis_is_out_of_reach_while_the_api_cannot_reach_it(
    own_redis: OwnRedis, client
) -> None:
    assert client.get("/readyz").json()["checks"]["redis"]["ok"] is True
    own_redis.kill()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["redis"]["ok"] is False
    own_redis.start()
    assert client.get("/readyz").json()["checks"]["redis"]["ok"] is True
