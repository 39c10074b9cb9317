"""Each Redis role on a URL of its own, and RabbitMQ as the broker: a real worker takes a task
from the machine's RabbitMQ and writes its answer into the cache named by CACHE_URL."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from django.conf import settings

from tests.conftest import ROOT, subprocess_env, wait_until
from tests.scale import nodes, servers


def _redis_db(database: int) -> str:
    from marketplace.settings import _redis_url_with_db

    return _redis_url_with_db(settings.REDIS_URL, database)


def broker_url(database: int) -> str:
    """Database ``database`` of the tests' Redis as a broker URL (a socket as kombu spells it)."""
    from marketplace.settings import _celery_broker_url

    return _celery_broker_url(_redis_db(database))


def settings_of(**env: str) -> dict:
    script = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'broker': s.CELERY_BROKER_URL, 'cache': s.CACHES['default']['LOCATION'],"
        "'channels': s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['address'],"
        "'beat': s.CELERY_REDBEAT_REDIS_URL}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_role_takes_its_own_url_and_defaults_to_database_numbers() -> None:
    defaults = settings_of(REDIS_URL="redis://10.0.0.1:6379/0", REDIS_DATABASE_BASE="4")
    assert defaults == {
        "broker": "redis://10.0.0.1:6379/4",
        "cache": "redis://10.0.0.1:6379/5",
        "channels": "redis://10.0.0.1:6379/6",
        "beat": "redis://10.0.0.1:6379/7",
    }
    apart = settings_of(
        REDIS_URL="redis://10.0.0.1:6379/0",
        BROKER_URL="amqp://market:pw@mq.internal:5672/market",
        CACHE_URL="rediss://cache.internal:6380/0",
        CHANNEL_LAYER_URL="redis://channels.internal:6379/0",
        BEAT_URL="redis://beat.internal:6379/0",
    )
    assert apart == {
        "broker": "amqp://market:pw@mq.internal:5672/market",
        "cache": "rediss://cache.internal:6380/0",
        "channels": "redis://channels.internal:6379/0",
        "beat": "redis://beat.internal:6379/0",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BROKER_URL", "http://mq"),
        ("BROKER_URL", "unix:///run/redis.sock"),  # Celery's CLI would read it unconverted
        ("CACHE_URL", "amqp://mq"),
        ("CHANNEL_LAYER_URL", "mq"),
    ],
)
def test_a_bad_role_url_stops_with_its_name(name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=subprocess_env(**{name: value}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"{name} must start with one of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A virtual host of its own on the machine's RabbitMQ (so no other run's queue is shared),
    or the default one when this user cannot make one."""
    if not servers.rabbitmq_answers():
        pytest.skip("no RabbitMQ answers on 127.0.0.1:5672 (the machine's server is not running)")
    ctl = shutil.which("rabbitmqctl")
    if not ctl or os.geteuid() != 0:
        yield "/"
        return
    vhost = f"market-tests-{os.getpid()}"
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield vhost
    subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def test_a_worker_runs_a_task_from_rabbitmq(rabbitmq_vhost: str) -> None:
    broker = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost.replace('/', '%2F')}"
    cache_url = _redis_db(14)  # not the default database numbers: the cache's own URL
    env = nodes.node_environment(
        settings.DATA_DIR / "scale" / "rabbit-worker",
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
        BROKER_URL=broker,
        CACHE_URL=cache_url,
        CHANNEL_LAYER_URL=_redis_db(13),
    )
    app = Celery("rabbit-client", broker=broker, set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
    worker = nodes.start_worker("rabbit-worker", env, app=app)
    try:
        token = secrets.token_hex(8)
        app.send_task("workers.echo", kwargs={"key": f"echo:{token}", "value": "from-rabbit"})
        cache = redis.Redis.from_url(cache_url)
        # Django's cache keys are ":1:<key>" (version 1, no prefix); the value is pickled.
        wait_until(lambda: cache.exists(f":1:echo:{token}"), timeout=30)
        assert "amqp://guest:**@127.0.0.1:5672" in worker.tail()
    finally:
        worker.stop()
        app.close()
