"""The few Django internals the fast paths lean on (``core/prepared.py``'s docstring
and the deliver path's prefetched files), each exercised for the behaviour relied on: a Django
upgrade that changes one fails here, by name, rather than somewhere in a transition."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from agents_registry.models import Participant
from core.prepared import Placeholder, condition_sql, fetch_row, insert_rows
from marketplace import services
from marketplace.models import Bid, Task
from tests.marketplace.conftest import post

pytestmark = pytest.mark.django_db


def test_prepared_statements_are_logged_as_written() -> None:
    # CursorDebugWrapper.debug_sql's signature, DatabaseWrapper.queries_logged and make_cursor.
    with CaptureQueriesContext(connection) as queries:
        assert fetch_row("SELECT %s::int + 1", [41]) == (42,)
    assert [query["sql"] for query in queries] == ["SELECT %s::int + 1"]


def test_a_condition_compiles_to_the_text_after_where() -> None:
    # Query.sql_with_params: "SELECT ... FROM table WHERE condition", the values as %s.
    sql, params = condition_sql(Task, Q(state="open") & ~Q(poster_id=Placeholder("own")))
    assert sql == (
        '("marketplace_task"."state" = %(condition_0)s'
        ' AND NOT ("marketplace_task"."poster_id" = (%(own)s)))'
    )
    assert params == {"condition_0": "open"}


def test_inserted_rows_are_saved_instances(poster: Participant, worker: Participant) -> None:
    # Model._state.adding and .db: an inserted row saves as an UPDATE of itself.
    task = post(poster, checks={})
    bid = Bid(task=task, bidder=worker, price=10, eta_hours=1, plan="p")
    assert insert_rows(Bid, [bid])
    bid.plan = "changed"
    bid.save()
    assert list(Bid.objects.filter(task=task).values_list("pk", "plan")) == [(bid.pk, "changed")]


def test_a_delivery_lists_its_files_without_a_query(
    poster: Participant, worker: Participant
) -> None:
    # QuerySet._result_cache and _prefetch_done, Model._prefetched_objects_cache.
    task = post(poster, checks={})
    bid = services.bid_place(task=task, bidder=worker, price=10, eta_hours=1, plan="p")
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=worker)
    upload = SimpleUploadedFile("notes.txt", b"three bullets", content_type="text/plain")
    delivery = services.delivery_submit(task=task, actor=worker, text="Done.", files=[upload])
    with CaptureQueriesContext(connection) as queries:
        names = [stored.name for stored in delivery.files.all()]
    assert (names, len(queries)) == (["notes.txt"], 0)
    assert Task.objects.get(pk=task.pk).state == Task.State.DELIVERED
