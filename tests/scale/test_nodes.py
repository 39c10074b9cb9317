"""Several nodes on one machine, as a deployment on several machines runs: two web nodes, two
worker nodes and two beat candidates, each a process group with a data folder of its own, sharing
only one PostgreSQL behind PgBouncer (transaction pooling), Redis and an S3 server.

A file delivered through web node A downloads through web node B; a hosted agent's work runs on
both workers; one worker node is killed (SIGKILL, the whole group) in the middle of its runs and
web node A after its part, and nothing is lost: every task is delivered exactly once, every
credit is where it belongs; only one beat schedules throughout.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from agents_registry.services import api_key_issue
from ledger import selectors as ledger_selectors
from marketplace.models import Delivery, Task
from tests.conftest import wait_until
from tests.marketplace.conftest import AgentCaller, fund, make_agent
from tests.scale import nodes
from tests.scale.servers import PgBouncer, S3Server
from tests.scale.test_one_beat import LOCKED, SENT
from tests.workers.conftest import hosted_agent
from workers import services as worker_services
from workers.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

REDIS_BASE = 16  # the deployment's broker, cache, channels and beat: none of the suite's
JOBS = 8
METRICS_TOKEN = "nodes-metrics-" + "m" * 30


def slow_agent(server: HTTPServer, seconds: float) -> Counter:
    received: Counter = Counter()
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        payload = json.loads(request.get_data())
        with lock:
            received[payload["task"]["id"]] += 1
        time.sleep(seconds)
        body = {"text": f"done {payload['task']['id']}"}
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request("/slow").respond_with_handler(handler)
    return received


@pytest.fixture
def deployment(
    pgbouncer: PgBouncer, s3_server: S3Server, httpserver: HTTPServer
) -> Iterator[dict[str, nodes.Node]]:
    root = Path("/tmp") / f"mkt-nodes-{os.getpid()}"  # short: Unix socket paths are limited
    common = {
        "DATABASE_URL": pgbouncer.url(django_settings.DATABASES["default"]["NAME"]),
        "DATABASE_POOLER": "transaction",
        "REDIS_URL": django_settings.REDIS_URL,
        "REDIS_DATABASE_BASE": str(REDIS_BASE),
        **s3_server.environment(),
        "EMBEDDING_BACKEND": "hashing",
        # A killed attempt is recovered within seconds: short leases, a reaper every second.
        "WORKERS_LEASE_MARGIN_SECONDS": "1",
        "WORKERS_QUEUE_LEASE_SECONDS": "5",
        "WORKERS_RETRY_BACKOFF_SECONDS": "0.2",
        "WORKERS_REAPER_INTERVAL_SECONDS": "1",
        "OUTBOUND_HTTP_ALLOWED_HOSTS": f"127.0.0.1:{httpserver.port}",
        "BEAT_LOOP_SECONDS": "1",
        "BEAT_KEY_PREFIX": f"redbeat-nodes-{os.getpid()}",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    flush_deployment_redis()
    spawned = {
        "web-a": nodes.spawn_web("web-a", nodes.node_environment(root / "web-a", **common)),
        "web-b": nodes.spawn_web("web-b", nodes.node_environment(root / "web-b", **common)),
        "worker-1": nodes.spawn_worker(
            "worker-1", nodes.node_environment(root / "worker-1", **common)
        ),
        "worker-2": nodes.spawn_worker(
            "worker-2", nodes.node_environment(root / "worker-2", **common)
        ),
        "beat-1": nodes.start_beat("beat-1", nodes.node_environment(root / "beat-1", **common)),
        "beat-2": nodes.start_beat("beat-2", nodes.node_environment(root / "beat-2", **common)),
    }
    from marketplace.settings import _celery_broker_url, _redis_url_with_db

    control = Celery(
        "nodes-control",
        broker=_celery_broker_url(_redis_url_with_db(django_settings.REDIS_URL, REDIS_BASE)),
        set_as_current=False,
    )
    try:
        for name in ("web-a", "web-b"):
            nodes.wait_web(spawned[name], timeout=90)
        for name in ("worker-1", "worker-2"):
            nodes.wait_worker(spawned[name], control, timeout=90)
        yield spawned
    finally:
        for node in spawned.values():
            node.stop()
        control.close()
        flush_deployment_redis()


def flush_deployment_redis() -> None:
    from marketplace.settings import _redis_url_with_db

    for offset in range(4):
        redis.Redis.from_url(
            _redis_url_with_db(django_settings.REDIS_URL, REDIS_BASE + offset)
        ).flushdb()


def api(node: nodes.Node, caller: AgentCaller) -> httpx.Client:
    return httpx.Client(
        base_url=f"{node.url}/api/v1",
        headers={"Authorization": f"Api-Key {caller.secret}"},
        timeout=30,
    )


def test_two_web_nodes_two_workers_one_beat_share_only_the_servers(
    deployment: dict[str, nodes.Node], httpserver: HTTPServer, alice: User, bob: User, settings
) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    web_a, web_b = deployment["web-a"], deployment["web-b"]
    poster, writer = make_agent(alice, "Poster"), make_agent(bob, "Writer")
    fund(poster.participant, 100_000)

    # A file delivered through node A downloads through node B (the bucket is shared, the
    # nodes' data folders are not).
    with api(web_a, poster) as poster_a, api(web_a, writer) as writer_a:
        task_id = poster_a.post(
            "/tasks/", json={"title": "Write a note", "description": "One line.", "bounty": 300}
        ).json()["id"]
        assert writer_a.post(f"/tasks/{task_id}/claim/").status_code == 200
        writer_a.post(f"/tasks/{task_id}/start/")
        delivered = writer_a.post(
            f"/tasks/{task_id}/deliveries/",
            data={"text": "attached"},
            files={"files": ("note.txt", b"a note from node A", "text/plain")},
        )
        assert delivered.status_code == 201, delivered.text
    delivery_id, file_id = delivered.json()["id"], delivered.json()["files"][0]["id"]
    with api(web_b, poster) as poster_b:
        answer = poster_b.get(f"/deliveries/{delivery_id}/files/{file_id}/")
        assert answer.status_code == 302
        with urllib.request.urlopen(answer.headers["Location"], timeout=10) as download:
            assert download.read() == b"a note from node A"
        assert poster_b.post(f"/deliveries/{delivery_id}/accept/").status_code == 200
    for node in (web_a, web_b):
        assert not (node_data(node) / "media").exists()  # nothing on a node's own disk

    # A hosted agent's work, claimed through node A: it runs on both workers; worker 1 is
    # killed with its runs in flight, and node A too; worker 2 and node B finish the work.
    received = slow_agent(httpserver, 0.8)
    agent = hosted_agent(
        bob,
        "Slow HTTP agent",
        runtime="http",
        endpoint=f"http://127.0.0.1:{httpserver.port}/slow",
        soft_time_limit_seconds=2,
        hard_time_limit_seconds=3,
        max_attempts=6,
    )
    worker_services.webhook_secret_rotate(agent=agent)
    _key, secret = api_key_issue(participant=agent.participant, name="claims", scopes=None)
    hosted = AgentCaller(agent=agent, participant=agent.participant, api_key=_key, secret=secret)
    ids = []
    with api(web_a, poster) as poster_a, api(web_a, hosted) as hosted_a:
        for n in range(JOBS):
            posted = poster_a.post(
                "/tasks/", json={"title": f"Job {n}", "description": "Do it.", "bounty": 50}
            )
            assert posted.status_code == 201, posted.text
            ids.append(posted.json()["id"])
            assert hosted_a.post(f"/tasks/{ids[-1]}/claim/").status_code == 200

    worker_1, worker_2 = deployment["worker-1"], deployment["worker-2"]
    wait_until(lambda: runs(worker_1) >= 1 and runs(worker_2) >= 1, timeout=60, interval=0.2)
    try:
        wait_until(lambda: sum(received.values()) >= 3, timeout=60, interval=0.1)
    except AssertionError:
        raise AssertionError(
            list(Execution.objects.filter(task_ref__in=ids).values_list("status", "error_message"))
        ) from None
    worker_1.kill()
    web_a.kill()
    assert Execution.objects.filter(task_ref__in=ids, status="running").exists()

    def all_final() -> bool:
        return not Execution.objects.filter(
            task_ref__in=ids, status__in=Execution.ACTIVE_STATUSES
        ).exists()

    wait_until(all_final, timeout=90, interval=0.5)
    executions = list(Execution.objects.filter(task_ref__in=ids))
    assert {execution.status for execution in executions} == {"succeeded"}, [
        (execution.status, execution.attempts, execution.error_message) for execution in executions
    ]
    deliveries = Counter(Delivery.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    assert deliveries == Counter(ids)  # exactly one delivery per task
    assert set(Task.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"delivered"}
    for task_id in ids:
        assert ledger_selectors.escrow_balance(task_ref=f"task:{task_id}") == 50
    with api(web_b, poster) as poster_b:  # node B still answers, node A is gone
        assert poster_b.get(f"/tasks/{ids[0]}/").json()["status"] == "delivered"

    # Node B's metrics saw the shared state: the finished executions, an empty queue.
    metrics = httpx.get(
        f"{web_b.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert metrics.status_code == 200
    assert 'market_executions{state="succeeded"}' in metrics.text
    assert "market_http_requests_total" in metrics.text

    # One beat scheduled all along (its reaper sent the killed runs back); the other waited.
    beats = [deployment["beat-1"], deployment["beat-2"]]
    logs = [beat.log.read_text(errors="replace") for beat in beats]
    assert sorted(LOCKED in log for log in logs) == [False, True]
    assert sorted(SENT in log for log in logs) == [False, True]


def runs(worker: nodes.Node) -> int:
    return worker.log.read_text(errors="replace").count("Task workers.execution_run[")


def node_data(node: nodes.Node) -> Path:
    return node.log.parent
