"""Hosted executions against bare Celery: award-to-start latency and executions per second.

A no-op built-in agent runs on one Celery worker with a prefork pool of 2 processes. Latency:
tasks are claimed one by one (idle system) and award-to-start is ``started_at - created_at`` of
each execution (the award's transaction creates it; the worker's claim stamps the start), which
includes the commit, the broker and the worker picking it up. Throughput: N tasks are claimed in
one transaction, so N messages leave at its commit; the clock runs from the commit to the last
execution's finish (each execution: claim, task start, runtime, trace events, delivery through the
market, final state). The tasks are posted with the post handler off: no hosted bidding is
queued ahead of the executions. Baseline, same broker and worker: N bare Celery tasks that only
count themselves; ratio = our executions/s divided by bare tasks/s.

``--in-process`` measures instead what one execution costs, without a worker or a broker (the
noise of a shared machine hides it in the throughput): executions run one after another in this
process, as the award's message runs them (``at_once``: one transaction each); reported are the
SQL statements and the CPU milliseconds of this process (the hint publisher's thread included)
and of its PostgreSQL backend per execution.

    python bench/executions.py [--quick] [--rounds N] [--in-process] [--database NAME]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from harness import ROOT, Timings, emit, median, parse_args, ratio, setup_django


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "--loglevel", "WARNING"]
        + ["--concurrency", "2", "--hostname", f"bench-executions-{uuid.uuid4().hex[:6]}@%h"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    from celery import current_app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if current_app.control.ping(timeout=0.5):
            return process
    raise RuntimeError("the bench worker did not start")


def wait(predicate, timeout: float = 300.0, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError("timed out waiting for the workers")


def options(parser) -> None:
    parser.add_argument("--in-process", action="store_true", help="the cost of one execution")
    parser.add_argument("--database", default="bench_executions", help="created afresh")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], options)
    os.environ.setdefault("REDIS_DATABASE_BASE", "24")
    os.environ["EMBEDDING_BACKEND"] = "hashing"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DEBUG", "true")
    from django.conf import settings

    setup_django(args.database)
    # Posting is set-up here. Left on, the post handler queues each task's hosted bidding (a
    # matching query and bids, about as much work as an execution) on the worker's queue while
    # the bench posts: what is left of it when the clock starts slows the executions measured,
    # and the bare tasks have no such load before them.
    settings.MARKET_POST_HANDLER = ""

    from celery import current_app
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import transaction

    from agents_registry.services import agent_register, participant_create_human
    from ledger import services as ledger_services
    from marketplace import services as market_services
    from workers.models import Execution
    from workers.tasks import noop_task

    if args.in_process:
        # No broker at all: a worker of another run on the same Redis must never take these
        # messages (its database has other executions under the same ids).
        from workers.celery import app as celery_app

        celery_app.conf.broker_url = "memory://"

    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    batch = 60 if quick else 200
    latency_samples = 30 if quick else 60

    user = User.objects.create_user(username=f"bench-{uuid.uuid4().hex[:6]}", password="x" * 12)
    poster = participant_create_human(user=user)
    ledger_services.promo_grant(
        owner_ref=poster.ledger_ref, amount=10**9, idempotency_key=f"bench-{poster.pk}"
    )
    owner = participant_create_human(
        user=User.objects.create_user(username=f"owner-{uuid.uuid4().hex[:6]}")
    )

    def new_agent():
        agent = agent_register(
            owner=owner,
            name=f"No-op {uuid.uuid4().hex[:6]}",
            runtime="builtin",
            runtime_config={"builtin": "no-op"},
            concurrency_limit=10_000,
        )
        return agent

    def post(count: int) -> list:
        return [
            market_services.task_post(
                poster=poster, title=f"noop {n}", description="Do nothing at all.", bounty=10
            )
            for n in range(count)
        ]

    def claimed_executions(count: int) -> list[int]:
        agent = new_agent()
        tasks = post(count)
        with transaction.atomic():
            for task in tasks:
                market_services.task_claim(task=task, claimant=agent.participant)
        return list(
            Execution.objects.filter(agent=agent).order_by("pk").values_list("pk", flat=True)
        )

    if args.in_process:
        figures = in_process(claimed_executions, count=100 if quick else 400)
        emit("executions-in-process", figures, quick=quick)
        return

    env = os.environ.copy()
    # The worker runs as in production: no query log.
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "k" * 60,
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
        }
    )
    current_app.control.purge()
    worker = start_worker(env)
    try:
        # Warm up both paths (imports, connections) before measuring.
        agent = new_agent()
        for task in post(4):
            market_services.task_claim(task=task, claimant=agent.participant)
        wait(lambda: Execution.objects.filter(status="succeeded").count() >= 4)

        latency = Timings()
        agent = new_agent()
        for task in post(latency_samples):
            market_services.task_claim(task=task, claimant=agent.participant)
            wait(
                lambda t=task: Execution.objects.filter(task_ref=t.pk, status="succeeded").exists()
            )
        for created, started in Execution.objects.filter(agent=agent).values_list(
            "created_at", "started_at"
        ):
            latency.add((started - created).total_seconds())

        ours, bare = [], []
        for _ in range(rounds):
            key = f"bench-noop-{uuid.uuid4().hex}"
            cache.set(key, 0, timeout=3600)
            started = time.perf_counter()
            for _ in range(batch):
                noop_task.delay(counter_key=key)
            wait(lambda k=key: cache.get(k) >= batch)
            bare.append(batch / (time.perf_counter() - started))

            agent = new_agent()
            tasks = post(batch)
            committed: list[float] = []
            with transaction.atomic():
                # The first commit callback: the clock starts at the commit, before the messages
                # leave (they are sent by the callbacks that follow, in this thread).
                transaction.on_commit(lambda stamps=committed: stamps.append(time.perf_counter()))
                for task in tasks:
                    market_services.task_claim(task=task, claimant=agent.participant)
            started = committed[0]
            wait(
                lambda a=agent: (
                    Execution.objects.filter(agent=a, status="succeeded").count() >= batch
                ),
                interval=0.02,
            )
            ours.append(batch / (time.perf_counter() - started))
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    figures = {
        "award_to_start": latency.summary(),
        "batch": batch,
        "rounds": rounds,
        "executions_per_second": round(median(ours), 1),
        "bare_celery_tasks_per_second": round(median(bare), 1),
        "throughput_ratio": ratio(median(ours), median(bare)),
        "worker": "1 Celery worker, prefork pool of 2 processes, Redis broker, prefetch 1",
    }
    emit("executions", figures, quick=quick)


def _backend_cpu_seconds() -> float | None:
    """CPU time of this connection's PostgreSQL backend, when the server runs on this machine."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(claimed_executions, *, count: int) -> dict:
    """Run ``count`` claimed no-op executions one after another in this process."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from marketplace import live
    from workers import services

    def run(execution_ids: list[int]) -> None:
        for execution_id in execution_ids:
            outcome = services.execution_run(
                execution_id=execution_id, worker="bench:1", at_once=True
            )
            assert outcome == "succeeded", outcome

    run(claimed_executions(10))  # warm-up: imports, the connection, the hint publisher
    sampled = 20
    execution_ids = claimed_executions(sampled + count)
    reset_queries()  # with DEBUG on, a full log (9,000 queries of set-up) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        run(execution_ids[:sampled])
    live.flush()
    backend_before = _backend_cpu_seconds()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    run(execution_ids[sampled:])
    live.flush()
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    backend_after = _backend_cpu_seconds()
    backend = (
        round((backend_after - backend_before) / count * 1000, 2)
        if backend_before is not None and backend_after is not None
        else None
    )
    return {
        "executions": count,
        "sql_statements_per_execution": round(len(captured.captured_queries) / sampled, 1),
        "cpu_ms_per_execution": round(cpu / count * 1000, 2),
        "postgresql_backend_cpu_ms_per_execution": backend,
        "wall_ms_per_execution": round(wall / count * 1000, 2),
    }


if __name__ == "__main__":
    main()
