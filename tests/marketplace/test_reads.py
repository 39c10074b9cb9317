"""The API's hand-written task reads (``marketplace/api/reads.py``) say what the serializers and
the visibility rule of ``selectors`` say, for every kind of viewer."""

from __future__ import annotations

import datetime
import json

import pytest
from django.contrib.auth.models import User

from marketplace import selectors, services
from marketplace.api import reads
from marketplace.api import serializers as s
from marketplace.models import TASK_EMBEDDING_DIMENSIONS, Bid, Delivery, Task
from marketplace.selectors import Viewer
from tests.conftest import participant_of
from tests.marketplace.conftest import fund, make_agent, post


@pytest.fixture
def market(alice: User, bob: User, mallory: User, staff: User) -> dict:
    alice_p, bob_p, mallory_p = (participant_of(user) for user in (alice, bob, mallory))
    alice_agent = make_agent(alice, "Alice's poster bot").participant
    worker = make_agent(bob, "Bob's worker").participant
    bidder = make_agent(bob, "Bob's other agent").participant
    mallory_agent = make_agent(mallory, "Mallory's agent").participant
    fund(alice_agent, 5_000)
    deadline = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)  # whole seconds
    parent = post(alice_p, bounty=3_000, title="A parent", deadline=deadline)
    bid = services.bid_place(task=parent, bidder=worker, price=2_000, eta_hours=4, plan="Plan.")
    services.bid_award(bid=bid, actor=alice_p)
    services.task_start(task=parent, actor=worker)
    first = post(worker, bounty=300, title="First step", parent=parent, checks={"regex": "x"})
    post(worker, bounty=200, title="Second step", parent=parent, depends_on=[first])
    open_task = post(alice_p, bounty=500, title="Open, with a bid", auto_award={"window_hours": 48})
    services.bid_place(task=open_task, bidder=bidder, price=400, eta_hours=2, plan="Quick.")
    post(alice_p, bounty=400, title="Private to Alice", visibility=Task.Visibility.PRIVATE)
    post(alice_agent, bounty=100, title="Private to Alice's agent", visibility="private")
    post(alice_p, bounty=100, title="A draft", draft=True)
    post(mallory_p, bounty=100, title="Mallory's private", visibility="private")
    viewers = {
        "anonymous": Viewer(participant=None),
        "staff": Viewer(participant=participant_of(staff), is_staff=True),
        "alice": Viewer(participant=alice_p),
        "alice's agent": Viewer(participant=alice_agent),
        "bob": Viewer(participant=bob_p),
        "bob's worker": Viewer(participant=worker),
        "bob's other agent": Viewer(participant=bidder),
        "mallory": Viewer(participant=mallory_p),
        "mallory's agent": Viewer(participant=mallory_agent),
    }
    return {"viewers": viewers, "parent": parent}


def _page(viewer: Viewer, **filters) -> list[dict]:
    count, page = reads.task_page(
        viewer=viewer, limit=100, offset=0, count_cap=1_000, **{"state": "", **filters}
    )
    rows = json.loads(page)
    assert count == len(rows)
    return rows


def _detail(viewer: Viewer, task_id: int) -> dict | None:
    body = reads.task_detail(viewer=viewer, task_id=task_id)
    return None if body is None else json.loads(body)


def test_the_list_and_the_detail_match_the_serializers(market: dict) -> None:
    staff = market["viewers"]["staff"]
    expected = s.TaskOutput(selectors.tasks_feed(viewer=staff, state=None), many=True).data
    assert _page(staff) == expected
    assert any(row["active_bids"] for row in expected)
    for task in selectors.tasks_feed(viewer=staff, state=None):
        assert _detail(staff, task.pk) == s.TaskDetailOutput(task).data
    parent = _detail(staff, market["parent"].pk)
    assert parent["deadline"] == "2031-01-02T03:04:05Z"
    assert [child["title"] for child in parent["children"]] == ["First step", "Second step"]


def test_every_viewer_sees_what_the_selectors_allow(market: dict) -> None:
    every_task = list(Task.objects.select_related("poster__agent", "assignee__agent"))
    for name, viewer in market["viewers"].items():
        visible = set(selectors.tasks_visible(viewer=viewer).values_list("pk", flat=True))
        assert {row["id"] for row in _page(viewer)} == visible, name
        for task in every_task:
            shown = _detail(viewer, task.pk) is not None
            assert shown == selectors.can_view_task(viewer, task), (name, task.title)
    # The rule is not vacuous: some see private tasks, nobody else sees a draft.
    assert len(_page(market["viewers"]["alice"])) > len(_page(market["viewers"]["mallory"]))
    titles = {row["title"] for row in _page(market["viewers"]["bob's other agent"])}
    assert "A draft" not in titles and "Private to Alice" not in titles


def test_filters_narrow_the_page(market: dict) -> None:
    alice = market["viewers"]["alice"]
    own = alice.participant.pk
    assert {row["title"] for row in _page(alice, search="STEP")} == {"First step", "Second step"}
    assert _page(alice, search="100%") == []  # LIKE wildcards are literal
    assert {row["bounty"] for row in _page(alice, min_bounty=400, max_bounty=500)} == {400, 500}
    assert all(row["poster"]["id"] == own for row in _page(alice, posted_by=own))
    assert {row["title"] for row in _page(alice, parent=market["parent"].pk)} == {
        "First step",
        "Second step",
    }
    assert [row["title"] for row in _page(alice, state="in_progress")] == ["A parent"]
    count, page = reads.task_page(viewer=alice, limit=2, offset=1, count_cap=3, state="")
    assert count == 3 and len(json.loads(page)) == 2


def test_the_list_endpoint_validates_its_query(bob: User) -> None:
    client = make_agent(bob, "Asker").client()
    response = client.get("/api/v1/tasks/?status=nonsense&min_bounty=lots")
    assert response.status_code == 400
    body = response.json()
    assert "status" in str(body) and "min_bounty" in str(body)
    assert client.get("/api/v1/tasks/999999/").status_code == 404
    page = client.get("/api/v1/tasks/?limit=1")
    assert page["Content-Type"] == "application/json"
    assert set(page.json()) == {"count", "next", "previous", "results"}


def _values(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
        if field.name != "embedding"
    }


def test_prepared_lookups_load_what_the_orm_loads(market: dict, bob: User) -> None:
    """``task_with_parties``, ``task_alone`` and the API-key lookup build the instances the
    ORM would, converters included (JSON fields decoded), with the same relations cached."""
    from agents_registry.authentication import api_key_with_holder
    from agents_registry.models import ApiKey

    for task in Task.objects.select_related("poster__agent", "assignee__agent"):
        loaded = selectors.task_with_parties(task.pk)
        assert _values(loaded) == _values(task)
        assert isinstance(loaded.checks, dict) and isinstance(loaded.auto_award, dict)
        assert _values(loaded.poster) == _values(task.poster)
        assert (loaded.assignee and _values(loaded.assignee)) == (
            task.assignee and _values(task.assignee)
        )
        alone = selectors.task_alone(task.pk)
        assert _values(alone) == _values(task)
        assert isinstance(alone.checks, dict)
    agent = make_agent(bob, "Configured")
    agent.agent.runtime_config = {"builtin": "text_stats"}
    agent.agent.save(update_fields=["runtime_config"])
    key = ApiKey.objects.select_related("participant__agent").get(pk=agent.api_key.pk)
    loaded = api_key_with_holder(key.prefix)
    assert _values(loaded) == _values(key)
    assert loaded.participant.agent.runtime_config == {"builtin": "text_stats"}
    assert selectors.task_with_parties(10**9) is None
    assert selectors.task_alone(10**9) is None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "limit=20",
        "limit=5&offset=5",
        "offset=10&limit=20",
        "q=a%20b&status=open&offset=3",
        "x=&limit=2&offset=100",
        "tag=a&tag=b&offset=7",
        "q=%C3%A9t%C3%A9&offset=4&limit=2",
    ],
)
def test_pagination_links_are_drfs(query: str) -> None:
    from rest_framework.pagination import LimitOffsetPagination
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from marketplace.api.common import Pagination

    request = Request(APIRequestFactory().get(f"/api/v1/tasks/?{query}"))
    links = []
    for paginator in (LimitOffsetPagination(), Pagination()):
        paginator.default_limit, paginator.max_limit = 20, 100
        paginator.limit, paginator.offset = (
            paginator.get_limit(request),
            paginator.get_offset(request),
        )
        paginator.request, paginator.count = request, 1000
        links.append((paginator.get_next_link(), paginator.get_previous_link()))
    assert links[0] == links[1]


def test_bid_and_delivery_answers_are_the_serializers(alice: User, bob: User) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    poster = participant_of(alice)
    fund(poster, 5_000)
    worker = make_agent(bob, "Deliverer").participant
    task = post(poster, bounty=900, title="Deliver a file", checks={"regex": "x"})
    bid = services.bid_place(task=task, bidder=worker, price=800, eta_hours=3, plan="Plan <b>.")
    assert s.bid_output(bid) == s.BidOutput(bid).data
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=worker)
    scored = Bid.objects.get(pk=bid.pk)
    scored.score = 0.25
    assert s.bid_output(scored) == s.BidOutput(scored).data
    delivery, stored = services.delivery_submit_with_files(
        task=task,
        actor=worker,
        text="**Done** <script>alert(1)</script>",
        data={"rows": [1, 2.5, None], "ok": True},
        files=[SimpleUploadedFile("report.txt", b"three bullets", content_type="text/plain")],
    )
    # The deliver answer lists the files it stored without reading them back.
    with CaptureQueriesContext(connection) as queries:
        answer = s.delivery_output(delivery, files=stored)
    assert (len(queries), [file["name"] for file in answer["files"]]) == (0, ["report.txt"])
    assert answer == s.DeliveryOutput(delivery).data
    assert list(answer) == list(s.DeliveryOutput(delivery).data)
    again = Delivery.objects.get(pk=delivery.pk)
    again.check_results = [{"check": "regex", "passed": False, "evidence": "no x"}]
    again.skills_used = [3, 4]
    assert s.delivery_output(again, files=list(again.files.all())) == s.DeliveryOutput(again).data


def test_prepared_writes_write_what_the_orm_writes(market: dict) -> None:
    """``insert_rows`` and ``update_row`` write what ``bulk_create`` and ``QuerySet.update`` do
    (JSON, NULLs, ``auto_now_add``); an insert ``unless`` a row exists, and an update that writes
    rows of another table too, do so in one statement; a row that no longer matches ``where`` is
    left alone; the delivery lookup by idempotency key loads what the ORM loads."""
    from core.prepared import insert_rows, update_row
    from marketplace.models import TaskEvent

    task = Task.objects.get(title="A parent")
    actor = task.poster

    def rows() -> list[TaskEvent]:
        return [
            TaskEvent(task=task, kind="note", actor=actor, data={"list": [1, "two"], "n": None}),
            TaskEvent(task=task, kind="note", actor=None, data={}),
        ]

    def written(kind: str) -> list[dict]:
        events = TaskEvent.objects.filter(task=task, kind=kind).order_by("pk")
        return [
            {k: v for k, v in _values(event).items() if k not in ("id", "created_at", "kind")}
            for event in events
        ]

    TaskEvent.objects.bulk_create(rows())
    TaskEvent.objects.filter(kind="note").update(kind="by the ORM")
    inserted = rows()
    insert_rows(TaskEvent, inserted)
    assert written("note") == written("by the ORM")
    assert [event.created_at for event in inserted] == list(
        TaskEvent.objects.filter(kind="note").order_by("pk").values_list("created_at", flat=True)
    )
    assert insert_rows(TaskEvent, [])
    # ``unless``: a check in the insert's own statement.
    blocked = rows()
    condition = ("SELECT 1 FROM marketplace_task WHERE id = %s", [task.pk])
    assert insert_rows(TaskEvent, blocked, unless=condition) is False
    assert [event.pk for event in blocked] == [None, None]
    assert TaskEvent.objects.filter(kind="note").count() == 2
    assert insert_rows(TaskEvent, blocked, unless=(condition[0], [10**9])) is True
    assert TaskEvent.objects.filter(kind="note").count() == 4

    open_task = Task.objects.get(title="Open, with a bid")
    bid = Bid(task=open_task, bidder=actor, price=5, eta_hours=1, plan="A plan.", status="lost")
    bid.plan_embedding = [0.25] * TASK_EMBEDDING_DIMENSIONS
    insert_rows(Bid, [bid])
    stored = Bid.objects.get(pk=bid.pk)
    assert list(stored.plan_embedding) == bid.plan_embedding
    assert (stored.status, stored.created_at) == ("lost", bid.created_at)

    assert update_row(Task, task.pk, {"title": "Renamed"}, where={"state": "draft"}) == 0
    assert Task.objects.get(pk=task.pk).title == "A parent"
    assert update_row(Task, task.pk, {"title": "Renamed", "deadline": None}) == 1
    assert Task.objects.values_list("title", "deadline").get(pk=task.pk) == ("Renamed", None)
    with pytest.raises(ValueError, match="None in where"):
        update_row(Task, task.pk, {"title": "x"}, where={"deadline": None})
    # ``inserting``: rows of another model written by the same statement.
    assert update_row(Task, task.pk, {"title": "A parent"}, inserting=rows()) == 1
    assert Task.objects.get(pk=task.pk).title == "A parent"
    assert written("note")[-2:] == written("by the ORM")

    for child in Task.objects.filter(parent=task):
        services.task_cancel(task=child, actor=task.assignee)
    delivered = services.delivery_submit(
        task=task, actor=task.assignee, text="Done.", data={"n": 1}, idempotency_key="key-1"
    )
    loaded = selectors.delivery_by_key(
        task_id=task.pk, submitter_id=task.assignee_id, idempotency_key="key-1"
    )
    assert _values(loaded) == _values(Delivery.objects.get(pk=delivered.pk))
    assert (
        selectors.delivery_by_key(task_id=task.pk, submitter_id=actor.pk, idempotency_key="no")
        is None
    )


def test_prepared_statements_are_logged_as_written(db: None) -> None:
    """psycopg keeps no text for a statement once prepared: the query log still shows it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.prepared import prepared_cursor

    with CaptureQueriesContext(connection) as queries:
        for _ in range(4):  # prepared from the third use (prepare_threshold)
            with prepared_cursor() as cursor:
                cursor.execute("SELECT %s::int + 1", [41])
                assert cursor.fetchone() == (42,)
    assert [query["sql"] for query in queries] == ["SELECT %s::int + 1"] * 4


def test_the_prepared_reads_and_the_queryset_see_the_same_tasks(
    alice: User, bob: User, mallory: User, staff: User
) -> None:
    """``selectors.task_visibility``, compiled into the API's prepared reads, the ORM's
    queryset of it and ``can_view_task`` on a loaded task give one answer: every kind of viewer
    against a task in every state, public and private."""
    poster = make_agent(alice, "Poster").participant
    assignee = make_agent(bob, "Assignee").participant
    roles = {
        "anonymous": Viewer(participant=None),
        "staff": Viewer(participant=participant_of(staff), is_staff=True),
        "poster": Viewer(participant=poster),
        "poster's owner": Viewer(participant=participant_of(alice)),
        "poster's sibling agent": Viewer(participant=make_agent(alice, "Sibling").participant),
        "assignee": Viewer(participant=assignee),
        "assignee's owner": Viewer(participant=participant_of(bob)),
        "assignee's sibling agent": Viewer(participant=make_agent(bob, "Other").participant),
        "other participant": Viewer(participant=participant_of(mallory)),
        "other participant's agent": Viewer(participant=make_agent(mallory, "Third").participant),
    }
    unassigned = {Task.State.DRAFT, Task.State.OPEN, Task.State.CANCELLED, Task.State.EXPIRED}
    tasks = [
        Task.objects.create(
            poster=poster,
            title=f"{visibility} {state} {'assigned' if assigned else 'unassigned'}",
            description="A task.",
            bounty=100,
            state=state,
            visibility=visibility,
            assignee=assignee if assigned else None,
            price=100 if assigned else None,
        )
        for state in Task.State.values
        for visibility in Task.Visibility.values
        for assigned in ({False, True} if state in unassigned else {True})
    ]

    def expected(role: str, task: Task) -> bool:
        published = task.visibility == Task.Visibility.PUBLIC and task.state != Task.State.DRAFT
        family = role in {"poster", "poster's owner", "poster's sibling agent"}
        spoken_for = task.assignee_id is not None and role in {"assignee", "assignee's owner"}
        return role == "staff" or published or family or spoken_for

    for role, viewer in roles.items():
        queried = set(selectors.tasks_visible(viewer=viewer).values_list("pk", flat=True))
        listed = {row["id"] for row in _page(viewer)}
        for task in tasks:
            loaded = selectors.task_with_parties(task.pk)
            answers = {
                "expected": expected(role, task),
                "queryset": task.pk in queried,
                "prepared list": task.pk in listed,
                "prepared detail": _detail(viewer, task.pk) is not None,
                "loaded task": selectors.can_view_task(viewer, loaded),
            }
            assert len(set(answers.values())) == 1, (role, task.title, answers)
