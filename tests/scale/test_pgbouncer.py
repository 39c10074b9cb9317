"""The market behind PgBouncer in transaction pooling mode: a web node and a worker node whose
database URL is the pooler's run the whole lifecycle (post, bid, award, start, deliver with a
file, accept and its settlement), with more clients than server connections, so consecutive
transactions of one client land on different server connections."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from tests.conftest import participant_of, wait_until
from tests.marketplace.conftest import AgentCaller, available, escrow, fund, make_agent
from tests.scale import nodes
from tests.scale.servers import PgBouncer

pytestmark = pytest.mark.django_db(transaction=True)


TASK = {"title": "Count the words", "description": "In the attached text.", "bounty": 900}


def pooled_environment(pgbouncer: PgBouncer, name: str, **extra: str) -> dict[str, str]:
    return nodes.node_environment(
        django_settings.DATA_DIR / "scale" / name,
        DATABASE_URL=pgbouncer.url(django_settings.DATABASES["default"]["NAME"]),
        DATABASE_POOLER="transaction",
        REDIS_URL=django_settings.REDIS_URL,
        EMBEDDING_BACKEND="hashing",
        **extra,
    )


def pooler_transactions(pgbouncer: PgBouncer) -> int:
    with psycopg.connect(
        f"host=127.0.0.1 port={pgbouncer.port} dbname=pgbouncer user=postgres", autocommit=True
    ) as admin:
        cursor = admin.cursor()
        cursor.execute("SHOW STATS")
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    database = django_settings.DATABASES["default"]["NAME"]
    return sum(int(row["total_xact_count"]) for row in rows if row["database"] == database)


@pytest.fixture
def pooled_nodes(pgbouncer: PgBouncer) -> Iterator[tuple[nodes.Node, nodes.Node]]:
    web = nodes.start_web("pooled-web", pooled_environment(pgbouncer, "pooled-web"))
    worker = nodes.start_worker("pooled-worker", pooled_environment(pgbouncer, "pooled-worker"))
    yield web, worker
    web.stop()
    worker.stop()


def api(node: nodes.Node, caller: AgentCaller) -> httpx.Client:
    return httpx.Client(
        base_url=f"{node.url}/api/v1",
        headers={"Authorization": f"Api-Key {caller.secret}"},
        timeout=20,
    )


def test_the_lifecycle_and_its_settlement_through_transaction_pooling(
    pgbouncer: PgBouncer,
    pooled_nodes: tuple[nodes.Node, nodes.Node],
    alice: User,
    bob: User,
    settings,
) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    web, _worker = pooled_nodes
    poster, writer = make_agent(alice, "Poster"), make_agent(bob, "Writer")
    fund(poster.participant, 5_000)
    before = pooler_transactions(pgbouncer)
    start = {p: available(p) for p in (poster.participant, writer.participant)}
    with api(web, poster) as posting, api(web, writer) as working:
        posted = posting.post(
            "/tasks/",
            json=TASK,
            headers={"Idempotency-Key": "pooled-post-1"},
        )
        assert posted.status_code == 201, posted.text
        task_id = posted.json()["id"]
        # The same key again: the idempotency lock and replay work across pooled connections.
        again = posting.post(
            "/tasks/",
            json=TASK,
            headers={"Idempotency-Key": "pooled-post-1"},
        )
        assert again.status_code == 201 and again.json()["id"] == task_id
        for _ in range(5):  # the prepared-statement path, many times on mixed connections
            assert posting.get(f"/tasks/{task_id}/").status_code == 200
            assert posting.get("/tasks/").status_code == 200
        bid = working.post(
            f"/tasks/{task_id}/bids/", json={"price": 700, "eta_hours": 2, "plan": "Count."}
        )
        assert bid.status_code == 201, bid.text
        awarded = posting.post(f"/bids/{bid.json()['id']}/award/")
        assert awarded.status_code == 200, awarded.text
        assert working.post(f"/tasks/{task_id}/start/").json()["status"] == "in_progress"
        delivered = working.post(
            f"/tasks/{task_id}/deliveries/",
            data={"text": "412 words"},
            files={"files": ("count.txt", b"412", "text/plain")},
        )
        assert delivered.status_code == 201, delivered.text
        delivery_id = delivered.json()["id"]
        # The worker node (through the pooler too) runs the machine checks.
        wait_until(
            lambda: posting.get(f"/deliveries/{delivery_id}/").json()["check_status"] != "pending"
        )
        accepted = posting.post(f"/deliveries/{delivery_id}/accept/")
        assert accepted.status_code == 200, accepted.text
        twice = posting.post(f"/deliveries/{delivery_id}/accept/")
        assert twice.status_code == 409
        assert set(twice.json()["error"]) == {"code", "message", "fields"}
    fee = 700 * django_settings.PLATFORM_FEE_BASIS_POINTS // 10_000
    assert available(writer.participant) == start[writer.participant] + 700 - fee
    assert available(poster.participant) == start[poster.participant] - 700
    from marketplace.models import Task

    assert escrow(Task.objects.get(pk=task_id)) == 0
    assert participant_of(alice) != poster.participant
    assert pooler_transactions(pgbouncer) - before > 20
