"""Invariant 7: a restarted Redis or PostgreSQL loses no task and no credit; work resumes alone.

The whole marketplace runs as ``make run`` runs it (web, worker and beat under ``manage.py up``)
on servers of its own data folder, so restarting them disturbs no other test. The demo's built-in
agents bid on the demo's tasks by themselves; alice awards two of them:

* the first while Redis is down (the award commits, its message cannot be sent): after Redis is
  back, beat's reaper sends it again and the worker runs it;
* the second after PostgreSQL was restarted under the running web, worker and beat.

Both are delivered exactly once and accepted, and the ledger reconciles.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests import own_marketplace
from tests.conftest import ROOT

pytestmark = pytest.mark.worker

AWARD = """
import json, time
from django.conf import settings
from marketplace import embedded, services
from marketplace.models import Bid, Task
from workers.models import Execution

title, slug, redis_down = {title!r}, {slug!r}, {redis_down!r}
task = Task.objects.get(title=title)
deadline = time.monotonic() + 60
while not Bid.objects.filter(task=task, bidder__agent__slug=slug).exists():
    assert time.monotonic() < deadline, "the hosted agent never bid"
    time.sleep(0.3)
bid = Bid.objects.get(task=task, bidder__agent__slug=slug)
if redis_down:
    embedded.stop_redis(settings.DATA_DIR)
services.bid_award(bid=bid, actor=task.poster)
execution = Execution.objects.get(task_ref=task.pk)
if redis_down:
    embedded.ensure_redis(settings.DATA_DIR)
print(json.dumps({{"task": task.pk, "execution": execution.pk, "status": execution.status}}))
"""

STATE = """
import json
from marketplace.models import Delivery, Task
from workers.models import Execution
ids = {ids!r}
print(json.dumps({{
    "states": sorted(Task.objects.filter(pk__in=ids).values_list("state", flat=True)),
    "executions": sorted(
        Execution.objects.filter(task_ref__in=ids).values_list("status", flat=True)
    ),
    "errors": [
        message for message in Execution.objects.filter(task_ref__in=ids)
        .values_list("error_message", flat=True) if message
    ],
    "deliveries": Delivery.objects.filter(task_id__in=ids).count(),
}}))
"""

ACCEPT = """
from marketplace import services
from marketplace.models import Delivery
for delivery in Delivery.objects.filter(task_id__in={ids!r}):
    services.delivery_accept(delivery=delivery, actor=delivery.task.poster)
print("accepted")
"""


def _shell(env: dict[str, str], script: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def _wait_for_state(env: dict[str, str], ids: list[int], states: list[str]) -> dict:
    deadline = time.monotonic() + 90
    while True:
        state = json.loads(_shell(env, STATE.format(ids=ids)))
        if state["states"] == states or time.monotonic() > deadline:
            return state
        time.sleep(1)


def test_work_resumes_after_redis_and_postgres_restarts() -> None:
    from marketplace import embedded

    # A queued message lost with Redis is sent again within seconds.
    data_dir, port, env = own_marketplace.environment(
        "restart", WORKERS_QUEUE_LEASE_SECONDS="3", WORKERS_REAPER_INTERVAL_SECONDS="1"
    )
    log = open(f"{data_dir}.log", "w")  # noqa: SIM115 - kept for a failure's diagnosis
    up = own_marketplace.start(env, log)
    try:
        if own_marketplace.wait_ready(port, up) is None:
            pytest.fail("the marketplace never became ready")

        first = json.loads(
            _shell(
                env,
                AWARD.format(
                    title="Validate a CSV of orders and convert it to JSON",
                    slug="builtin-json-csv",
                    redis_down=True,
                ),
            )
        )
        assert first["status"] == "queued"
        state = _wait_for_state(env, [first["task"]], ["delivered"])
        assert state == {
            "states": ["delivered"],
            "executions": ["succeeded"],
            "errors": [],
            "deliveries": 1,
        }

        assert embedded.stop_postgres(data_dir)
        embedded.ensure_postgres(data_dir)
        second = json.loads(
            _shell(
                env,
                AWARD.format(
                    title="Summarise our quarterly customer-support report",
                    slug="builtin-summarizer",
                    redis_down=False,
                ),
            )
        )
        ids = [first["task"], second["task"]]
        state = _wait_for_state(env, ids, ["delivered", "delivered"])
        assert state == {
            "states": ["delivered", "delivered"],
            "executions": ["succeeded", "succeeded"],
            "errors": [],
            "deliveries": 2,
        }

        assert _shell(env, ACCEPT.format(ids=ids)) == "accepted"
        reconcile = subprocess.run(
            [sys.executable, "manage.py", "reconcile"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        embedded.stop_all(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
