"""The API's task list and detail kept in Redis (``marketplace/read_cache.py``): answered with
one statement (the read version) while nothing changed, new after every committed change
(through the API, a service, a plain save, any write helper or raw SQL), one answer per kind of
viewer, and never older than a change that commits while an answer is computed."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from core.prepared import insert_rows, update_row
from marketplace import read_cache
from marketplace.models import Task
from tests.conftest import participant_of
from tests.marketplace.conftest import fund, make_agent, post


def _get(client: APIClient, path: str) -> tuple[dict, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
        assert response.status_code == 200, response.content
    return response.json(), len(queries)


def _titles(body: dict) -> list[str]:
    return [task["title"] for task in body["results"]]


@pytest.mark.django_db(transaction=True)
def test_answers_are_kept_until_a_change_commits(alice: User, bob: User) -> None:
    poster = participant_of(alice)
    fund(poster, 5_000)
    task = post(poster, bounty=500, title="Summarise")
    agent = make_agent(bob, f"Poller {uuid.uuid4().hex[:6]}")
    client = agent.client()
    client.get("/api/v1/me/")  # stamps the key's last use (at most once a minute)
    listed, _ = _get(client, "/api/v1/tasks/")
    again, queries = _get(client, "/api/v1/tasks/")
    assert again == listed and queries == 2  # the key's lookup, the read version
    detail, _ = _get(client, f"/api/v1/tasks/{task.pk}/")
    assert _get(client, f"/api/v1/tasks/{task.pk}/") == (detail, 2)
    assert detail["active_bids"] == 0

    # A bid through the API commits: both answers are new.
    body = {"price": 400, "eta_hours": 2, "plan": "Read, then summarise."}
    assert client.post(f"/api/v1/tasks/{task.pk}/bids/", body, format="json").status_code == 201
    assert _get(client, f"/api/v1/tasks/{task.pk}/")[0]["active_bids"] == 1
    assert _get(client, "/api/v1/tasks/")[0]["results"][0]["active_bids"] == 1

    # A plain save of a participant shown in them (the admin's way).
    poster.display_name = "Alice the poster"
    poster.save(update_fields=["display_name"])
    assert _get(client, "/api/v1/tasks/")[0]["results"][0]["poster"]["display_name"] == (
        "Alice the poster"
    )
    # Cancelling (a service: the task, its bids and the ledger in one transaction).
    from marketplace import services

    services.task_cancel(task=Task.objects.get(pk=task.pk), actor=poster)
    assert _get(client, "/api/v1/tasks/")[0]["count"] == 0
    assert _get(client, f"/api/v1/tasks/{task.pk}/")[0]["status"] == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_each_kind_of_viewer_has_its_own_answer(
    alice: User, bob: User, mallory: User, staff: User, client_for
) -> None:
    owner = make_agent(alice, f"Owner {uuid.uuid4().hex[:6]}")
    fund(owner.participant, 1_000)
    post(owner.participant, bounty=100, title="Public")
    post(owner.participant, bounty=100, title="Private", visibility=Task.Visibility.PRIVATE)
    other = make_agent(bob, f"Other {uuid.uuid4().hex[:6]}").client()
    mine = owner.client()
    assert sorted(_titles(_get(mine, "/api/v1/tasks/")[0])) == ["Private", "Public"]
    assert _titles(_get(other, "/api/v1/tasks/")[0]) == ["Public"]
    assert _titles(_get(client_for(mallory), "/api/v1/tasks/")[0]) == ["Public"]
    assert sorted(_titles(_get(client_for(staff), "/api/v1/tasks/")[0])) == ["Private", "Public"]
    assert sorted(_titles(_get(client_for(alice), "/api/v1/tasks/")[0])) == ["Private", "Public"]
    assert sorted(_titles(_get(mine, "/api/v1/tasks/")[0])) == ["Private", "Public"]
    assert _titles(_get(other, "/api/v1/tasks/")[0]) == ["Public"]


def test_a_change_that_commits_while_an_answer_is_computed_is_noticed(db: None) -> None:
    """The version is read before the database: a change committed during the computation
    replaces it afterwards, so the answer kept under the old version is never served again."""
    computed = []

    def compute() -> str:
        computed.append(1)
        if len(computed) == 1:
            read_cache.new_version()  # what the change's commit does
        return f"answer {len(computed)}"

    key = f"test {uuid.uuid4().hex}"
    assert read_cache.answer_kept_or_computed(key, compute) == "answer 1"
    assert (
        read_cache.answer_kept_or_computed(key, compute) == "answer 2"
    )  # not the answer kept under the old version
    assert read_cache.answer_kept_or_computed(key, compute) == "answer 2"  # kept from here on
    assert read_cache.answer_kept_or_computed(f"{key} not found", lambda: None) is None
    assert (
        read_cache.answer_kept_or_computed(f"{key} not found", lambda: "found") is None
    )  # "none" is kept too


def test_a_transaction_that_changed_the_market_reads_around_the_cache(alice: User) -> None:
    key = f"test {uuid.uuid4().hex}"
    assert read_cache.answer_kept_or_computed(key, lambda: "before") == "before"
    with transaction.atomic():
        post(participant_of(alice), bounty=100, title="Uncommitted")  # its own writes are not kept
        assert read_cache.answer_kept_or_computed(key, lambda: "inside") == "inside"
        assert read_cache.answer_kept_or_computed(f"{key} new", lambda: "inside") == "inside"
        assert read_cache.answer_kept_or_computed(f"{key} new", lambda: "again") == "again"


def test_answers_come_from_the_database_while_redis_is_out_of_reach(db: None, monkeypatch) -> None:
    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to Redis: Connection refused.")

    monkeypatch.setattr(read_cache, "_read", unreachable)
    monkeypatch.setattr(read_cache, "redis_command", unreachable)
    answers = iter(["first", "second"])
    assert read_cache.answer_kept_or_computed("test offline", lambda: next(answers)) == "first"
    assert read_cache.answer_kept_or_computed("test offline", lambda: next(answers)) == "second"


def test_the_cache_can_be_turned_off(db: None, settings) -> None:
    settings.MARKET_READ_CACHE = False
    answers = iter(["first", "second"])
    assert read_cache.answer_kept_or_computed("test off", lambda: next(answers)) == "first"
    assert read_cache.answer_kept_or_computed("test off", lambda: next(answers)) == "second"


def _rename_by_save(task: Task, title: str) -> None:
    task.title = title
    task.save(update_fields=["title"])


def _rename_by_raw_sql(task: Task, title: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE marketplace_task SET title = %s WHERE id = %s", [title, task.pk])


def _rename_poster_by_raw_sql(task: Task, title: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agents_registry_participant SET display_name = %s WHERE id = %s",
            [title, task.poster_id],
        )


def _bid_by_insert_rows(task: Task, title: str) -> None:
    from agents_registry.models import Participant
    from marketplace.models import Bid

    bidder = Participant.objects.exclude(pk=task.poster_id).first()
    insert_rows(Bid, [Bid(task=task, bidder=bidder, price=1, eta_hours=1, plan=title)])


def _bids_deleted(task: Task, title: str) -> None:
    from marketplace.models import Bid

    Bid.objects.filter(task=task).delete()


def _dependency_by_bulk_create(task: Task, title: str) -> None:
    from marketplace.models import TaskDependency

    other = Task.objects.exclude(pk=task.pk).first()
    TaskDependency.objects.bulk_create([TaskDependency(task=task, depends_on=other)])


# Each way of writing, and what the next read of the task's detail shows after it.
WRITES = {
    "save": (_rename_by_save, lambda body, title: body["title"] == title),
    "queryset_update": (
        lambda task, title: Task.objects.filter(pk=task.pk).update(title=title),
        lambda body, title: body["title"] == title,
    ),
    "update_row": (
        lambda task, title: update_row(Task, task.pk, {"title": title}),
        lambda body, title: body["title"] == title,
    ),
    "raw_sql": (_rename_by_raw_sql, lambda body, title: body["title"] == title),
    "raw_sql_on_a_participant": (
        _rename_poster_by_raw_sql,
        lambda body, title: body["poster"]["display_name"] == title,
    ),
    "insert_rows": (_bid_by_insert_rows, lambda body, title: body["active_bids"] == 1),
    "bulk_create": (_dependency_by_bulk_create, lambda body, title: len(body["depends_on"]) == 1),
    "delete": (_bids_deleted, lambda body, title: body["active_bids"] == 0),
    "in_a_transaction": (
        lambda task, title: transaction.atomic()(_rename_by_raw_sql)(task, title),
        lambda body, title: body["title"] == title,
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", sorted(WRITES))
def test_every_way_of_writing_is_seen_by_the_next_read(alice: User, bob: User, way: str) -> None:
    poster = participant_of(alice)
    fund(poster, 5_000)
    post(poster, bounty=100, title="The other task")
    task = post(poster, bounty=500, title="Before")
    if way == "delete":
        from marketplace import services

        bidder = make_agent(bob, f"Bidder {uuid.uuid4().hex[:6]}").participant
        services.bid_place(task=task, bidder=bidder, price=10, eta_hours=1, plan="p")
    else:
        make_agent(bob, f"Bidder {uuid.uuid4().hex[:6]}")
    client = make_agent(bob, f"Poller {uuid.uuid4().hex[:6]}").client()
    client.get("/api/v1/me/")  # stamps the key's last use (at most once a minute)
    path = f"/api/v1/tasks/{task.pk}/"
    before, _ = _get(client, path)
    assert _get(client, path) == (before, 2)  # kept: only the key and the version are read

    write, shows = WRITES[way]
    title = f"After {way}"
    write(Task.objects.get(pk=task.pk), title)

    after, _ = _get(client, path)
    assert shows(after, title), after
    assert after != before


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_by_another_connection_during_a_read_is_noticed(alice: User) -> None:
    """The version is read before the data: a change committed while an answer is computed
    moves it, so the answer kept under the old version is never served again."""
    import threading

    poster = participant_of(alice)
    fund(poster, 1_000)
    task = post(poster, bounty=100, title="Before")
    computed = []

    def commit_elsewhere() -> None:
        try:
            update_row(Task, task.pk, {"title": "After"})
        finally:
            connection.close()

    def compute() -> str:
        computed.append(1)
        if len(computed) == 1:
            writer = threading.Thread(target=commit_elsewhere)
            writer.start()
            writer.join()
        return f"answer {len(computed)}"

    key = f"test {uuid.uuid4().hex}"
    assert read_cache.answer_kept_or_computed(key, compute) == "answer 1"
    assert (
        read_cache.answer_kept_or_computed(key, compute) == "answer 2"
    )  # not the answer kept under the old version
    assert read_cache.answer_kept_or_computed(key, compute) == "answer 2"  # kept from here on
