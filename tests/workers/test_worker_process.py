"""Real Celery worker processes: builtin agents end to end, and SIGKILL in the middle of runs."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from celery import current_app
from django.contrib.auth.models import User
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from agents_registry.models import Participant
from ledger import selectors as ledger_selectors
from marketplace import services as market_services
from marketplace.models import Delivery, Task
from tests.conftest import WorkerProcess, wait_until
from tests.workers.conftest import hosted_agent, post_task
from workers import services
from workers.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer, settings
) -> Iterator[HTTPServer]:
    # The worker subprocess inherits these: fast embeddings, a one-second lease margin so a
    # killed attempt is recovered within seconds, and the loopback agent allowed. A worker killed
    # after taking a message but before its claim committed leaves the execution queued with an
    # unacknowledged message: the reaper sends it again when the queue lease ends (5 minutes by
    # default; seconds here, in this process, which awards and reaps, and in the worker's).
    monkeypatch.setenv("EMBEDDING_BACKEND", "hashing")
    monkeypatch.setenv("WORKERS_LEASE_MARGIN_SECONDS", "1")
    # A running attempt's heartbeat: a killed worker's attempt is back within about 2 s.
    monkeypatch.setenv("WORKERS_HEARTBEAT_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("WORKERS_HEARTBEAT_LEASE_SECONDS", "2")
    monkeypatch.setenv("WORKERS_QUEUE_LEASE_SECONDS", "5")
    settings.WORKERS_QUEUE_LEASE_SECONDS = 5
    monkeypatch.setenv("WORKERS_RETRY_BACKOFF_SECONDS", "0.2")
    monkeypatch.setenv("OUTBOUND_HTTP_ALLOWED_HOSTS", f"127.0.0.1:{httpserver.port}")
    # Only this test's workers, started with these settings, may take its messages.
    with WorkerProcess.others_paused():
        yield httpserver


@pytest.fixture
def worker(worker_env: HTTPServer) -> Iterator[WorkerProcess]:
    process = WorkerProcess(concurrency=2, name="workers-e2e")
    process.start()
    yield process
    process.stop()


def test_builtin_agents_run_in_a_real_worker_from_award_to_accepted_delivery(
    worker: WorkerProcess, poster: Participant, bob: User
) -> None:
    jobs = {
        "text-stats": "```\nSolar panels turn light into power. Solar panels last long.\n```",
        "summarizer": "Rivers carry water to the sea. Rivers shape valleys over time. "
        "Birds sing at dawn. Rivers also carry sediment that builds deltas.",
        "json-csv": "```\nname,score\nada,9\nbob,7\n```",
        "verifier": '```\n{"total": 3, "currency": "EUR"}\n```',
    }
    tasks = {}
    for slug, description in jobs.items():
        agent = hosted_agent(bob, f"Builtin {slug}", builtin=slug)
        task = post_task(
            poster,
            title=f"Job for {slug} in 2 sentences",
            description=description,
            bounty=100,
            checks={"required_fields": ["total"]} if slug == "verifier" else None,
        )
        tasks[slug] = market_services.task_claim(task=task, claimant=agent.participant)

    def all_delivered() -> bool:
        states = set(
            Task.objects.filter(pk__in=[t.pk for t in tasks.values()]).values_list(
                "state", flat=True
            )
        )
        return states == {"delivered"}

    wait_until(all_delivered, timeout=60)
    data = {slug: Delivery.objects.get(task_id=task.pk) for slug, task in tasks.items()}
    assert data["text-stats"].data["words"] == 10
    assert data["summarizer"].text.count("Rivers") == 2
    assert data["json-csv"].data["records"] == [
        {"name": "ada", "score": 9},
        {"name": "bob", "score": 7},
    ]
    assert data["verifier"].data["passed"] is True

    for slug, task in tasks.items():
        market_services.delivery_accept(delivery=data[slug], actor=poster)
        execution = Execution.objects.get(task_ref=task.pk)
        assert (execution.status, execution.attempts, execution.delivery_ref) == (
            "succeeded",
            1,
            data[slug].pk,
        )
        assert execution.started_at <= execution.finished_at
        assert Task.objects.get(pk=task.pk).state == "accepted"
        payee = Task.objects.get(pk=task.pk).assignee
        assert ledger_selectors.balance_for(owner_ref=payee.ledger_ref).available == 95


def slow_agent(server: HTTPServer, seconds: float) -> Counter:
    received: Counter = Counter()
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        payload = json.loads(request.get_data())
        with lock:
            received[payload["task"]["id"]] += 1
        time.sleep(seconds)
        return Response(
            json.dumps({"text": f"done {payload['task']['id']}"}), content_type="application/json"
        )

    server.expect_request("/slow").respond_with_handler(handler)
    return received


def test_sigkill_during_executions_loses_nothing_and_delivers_each_once(
    worker_env: HTTPServer, poster: Participant, bob: User
) -> None:
    received = slow_agent(worker_env, 0.6)
    agent = hosted_agent(
        bob,
        "Slow HTTP agent",
        runtime="http",
        endpoint=worker_env.url_for("/slow"),
        soft_time_limit_seconds=2,
        hard_time_limit_seconds=3,
        max_attempts=6,
    )
    services.webhook_secret_rotate(agent=agent)
    process = WorkerProcess(concurrency=2, name="workers-kill")
    process.start()
    try:
        tasks = [
            market_services.task_claim(
                task=post_task(poster, title=f"Job {n}", bounty=50), claimant=agent.participant
            )
            for n in range(10)
        ]
        ids = [task.pk for task in tasks]
        for _ in range(2):
            # Kill while requests are in flight, twice.
            wait_until(lambda: sum(received.values()) >= 1, timeout=30)
            time.sleep(0.3)
            process.kill()
            assert Execution.objects.filter(task_ref__in=ids, status="running").exists()
            process.start()

        def all_final() -> bool:
            services.executions_reap()  # what beat does every few seconds
            return not Execution.objects.filter(
                task_ref__in=ids, status__in=Execution.ACTIVE_STATUSES
            ).exists()

        try:
            wait_until(all_final, timeout=90, interval=0.5)
        except AssertionError:
            left = Execution.objects.filter(task_ref__in=ids).values_list(
                "status", "attempts", "lease_expires_at"
            )
            raise AssertionError(f"executions not final after 90 s: {list(left)}") from None
    finally:
        process.stop()

    executions = list(Execution.objects.filter(task_ref__in=ids))
    assert len(executions) == 10
    assert {execution.status for execution in executions} == {"succeeded"}, [
        (execution.status, execution.attempts, execution.error_code, execution.error_message)
        for execution in executions
    ]
    deliveries = Counter(Delivery.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    assert deliveries == Counter(ids)  # exactly one delivery per task
    assert set(Task.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"delivered"}
    # Killed attempts are the platform's: given back, so no agent attempt was spent on them.
    assert sum(execution.platform_failures for execution in executions) >= 1
    assert {execution.attempts for execution in executions} == {1}
    assert ledger_selectors.balance_for(owner_ref=agent.participant.ledger_ref).available == 0
    for task_id in ids:
        assert ledger_selectors.escrow_balance(task_ref=f"task:{task_id}") == 50


def test_a_pool_process_killed_in_an_attempt_at_once_leaves_nothing_and_its_message_returns(
    worker_env: HTTPServer, poster: Participant, bob: User
) -> None:
    """A built-in agent's first attempt runs at once, in one transaction. Its pool process is
    killed in the middle (SIGKILL): the transaction dies with it, the message comes back marked
    redelivered (late acknowledgement, rejected on worker loss), and runs as a two-transaction
    attempt, whose claim commits before the run. One attempt is counted, one delivery made, and
    the task started once, well before its delivery (at once, both share one timestamp)."""
    import psutil

    from marketplace.models import TaskEvent

    agent = hosted_agent(bob, "Long summariser", builtin="summarizer")
    text = " ".join(f"Rivers carry stone {n}." for n in range(700))  # TextRank: about 2.5 s
    process = WorkerProcess(concurrency=1, name="workers-at-once-kill")
    process.start()
    try:
        task = market_services.task_claim(
            task=post_task(poster, title="Summary in 3 sentences", description=text, bounty=50),
            claimant=agent.participant,
        )
        inspector = current_app.control.inspect(destination=[process.hostname], timeout=1)
        wait_until(lambda: (inspector.active() or {}).get(process.hostname), timeout=30)
        time.sleep(0.5)  # the attempt runs the agent now, its transaction open
        execution = Execution.objects.get(task_ref=task.pk)
        assert (execution.status, execution.attempts) == ("queued", 0)  # nothing committed
        (pool_process,) = psutil.Process(process.process.pid).children()
        pool_process.kill()
        wait_until(
            lambda: Task.objects.get(pk=task.pk).state == "delivered", timeout=90, interval=0.5
        )
    finally:
        process.stop()

    execution.refresh_from_db()
    assert (execution.status, execution.attempts) == ("succeeded", 1)
    assert Delivery.objects.filter(task_id=task.pk).count() == 1
    events = dict(
        TaskEvent.objects.filter(task_id=task.pk, kind__in=["started", "delivered"]).values_list(
            "kind", "created_at"
        )
    )
    assert TaskEvent.objects.filter(task_id=task.pk, kind="started").count() == 1
    assert (events["delivered"] - events["started"]).total_seconds() > 0.5
