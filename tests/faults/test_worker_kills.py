"""The worker SIGKILLed again and again while awards happen: the run command starts it again each
time, every awarded task is delivered exactly once, and the ledger reconciles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg

from marketplace.models import Delivery
from tests.conftest import ROOT
from tests.faults.market import Market, wait_for
from workers.models import Execution

AWARDS = 12
KILL_EVERY = 2.0  # seconds

# Run in the market's own environment (``manage.py shell``): a poster, a hosted built-in agent of
# another owner, and tasks awarded to it one after another while the test kills the worker.
AWARD_SCRIPT = """
import json, time, uuid
from django.contrib.auth.models import User
from agents_registry.services import agent_register, participant_create_human
from ledger import services as ledger_services
from marketplace import services as market_services

tag = uuid.uuid4().hex[:6]
def human(name):
    user = User.objects.create_user(username=f"{name}-{tag}", password="faults-" + tag * 2)
    return participant_create_human(user=user)
poster, owner = human("poster"), human("owner")
ledger_services.promo_grant(
    owner_ref=poster.ledger_ref, amount=10_000, idempotency_key=f"faults-{tag}"
)
agent = agent_register(
    owner=owner, name=f"Faults {tag}", runtime="builtin", runtime_config={"builtin": "text-stats"}
)
ids = []
for n in range(%(awards)d):
    task = market_services.task_post(
        poster=poster, bounty=50, title=f"Count the words {n}",
        description="```\\nSolar panels turn light into power. Cats nap.\\n```",
    )
    ids.append(market_services.task_claim(task=task, claimant=agent.participant).pk)
    time.sleep(0.4)
print("AWARDED " + json.dumps(ids))
"""


def _query(market: Market, sql: str, params: tuple) -> list[tuple]:
    socket_dir = (market.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[4]
    with psycopg.connect(host=socket_dir.strip(), user="postgres", dbname="marketplace") as db:
        return db.execute(sql, params).fetchall()


def _award_during(market: Market, fault, faults_at_least: int) -> list[int]:
    """Award ``AWARDS`` tasks (in a process of their own) while ``fault()`` runs every
    ``KILL_EVERY`` seconds; the awarded task ids."""
    awarding = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", AWARD_SCRIPT % {"awards": AWARDS}],
        cwd=ROOT,
        env=market.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    faults = 0
    deadline = time.monotonic() + 120
    while (awarding.poll() is None or faults < faults_at_least) and time.monotonic() < deadline:
        faults += bool(fault())
        time.sleep(KILL_EVERY)
    output, _ = awarding.communicate(timeout=60)
    assert awarding.returncode == 0, output[-3000:]
    ids = json.loads(output.split("AWARDED ", 1)[1])
    assert len(ids) == AWARDS and faults >= faults_at_least
    return ids


def _each_delivered_once_and_reconciled(market: Market, ids: list[int]) -> None:
    executions = Execution._meta.db_table

    def all_final() -> bool:
        rows = _query(
            market,
            f"SELECT count(*) FROM {executions} WHERE task_ref = ANY(%s) AND status = ANY(%s)",
            (ids, list(Execution.ACTIVE_STATUSES)),
        )
        return rows[0][0] == 0

    wait_for(all_final, 120, interval=1.0)
    statuses = _query(
        market,
        f"SELECT task_ref, status, attempts FROM {executions} WHERE task_ref = ANY(%s)",
        (ids,),
    )
    assert {status for _, status, _ in statuses} == {"succeeded"}, statuses
    deliveries = _query(
        market,
        f"SELECT task_id FROM {Delivery._meta.db_table} WHERE task_id = ANY(%s)",
        (ids,),
    )
    assert Counter(task_id for (task_id,) in deliveries) == Counter(ids)  # exactly once each
    reconcile = market.manage("reconcile")
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
    wait_for(market.ready, 30)


def _kill(pid: int | None) -> bool:
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def test_a_worker_killed_repeatedly_while_awards_happen(market: Market) -> None:
    ids = _award_during(market, lambda: _kill(market.worker_pid()), faults_at_least=3)
    _each_delivered_once_and_reconciled(market, ids)


def test_awards_while_the_broker_is_killed_are_each_delivered_once(market: Market) -> None:
    """The broker (the embedded Redis) killed again and again while tasks are awarded: the
    awards succeed, and their work runs once the broker is back. How soon depends on the queue
    lease (short here, see ``fault_env``); with the default lease it is finding 4's outbox that
    makes it soon."""
    kills = []

    def kill_twice() -> bool:  # more would only wait out the supervisor's growing backoff
        if len(kills) < 2 and _kill(market.redis_pid()):
            kills.append(time.monotonic())
            return True
        return False

    ids = _award_during(market, kill_twice, faults_at_least=2)
    _each_delivered_once_and_reconciled(market, ids)
