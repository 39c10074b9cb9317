"""Hosted executions against bare Celery: award-to-start latency and executions per second.

A no-op built-in agent runs on one Celery worker with a prefork pool of 2 processes. Latency:
tasks are claimed one by one (idle system) and award-to-start is ``started_at - created_at`` of
each execution (the award's transaction creates it; the worker's claim stamps the start), which
includes the commit, the broker and the worker picking it up. Throughput: N tasks are claimed in
one transaction, so N messages leave at its commit; the clock runs from the commit to the last
execution's finish (each execution: claim, task start, runtime, trace events, delivery through the
market, final state). Baseline, same broker and worker: N bare Celery tasks that only count
themselves; ratio = our executions/s divided by bare tasks/s.

    python bench/executions.py [--quick] [--rounds N]
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


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    os.environ.setdefault("REDIS_DATABASE_BASE", "24")
    os.environ["EMBEDDING_BACKEND"] = "hashing"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DEBUG", "true")
    from django.conf import settings

    setup_django("bench_executions")

    from celery import current_app
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import transaction

    from agents_registry.services import agent_register, participant_create_human
    from ledger import services as ledger_services
    from marketplace import services as market_services
    from workers.models import Execution
    from workers.tasks import noop_task

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

    env = os.environ.copy()
    env.update({"DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL})
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
            with transaction.atomic():
                for task in tasks:
                    market_services.task_claim(task=task, claimant=agent.participant)
            started = time.perf_counter()
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


if __name__ == "__main__":
    main()
