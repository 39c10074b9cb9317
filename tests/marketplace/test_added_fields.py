"""A field added to a market model, with its column, breaks no transition.

What a migration that adds a field does, done inside the test: the column is added with the
schema editor (rolled back with the test's transaction) and the field joins the model with
``contribute_to_class``; both are removed afterwards. Then every hot transition runs: post, bid,
award, start, deliver, accept, and a hosted agent's execution (the two-transaction way and at
once). A hand-written statement that lists columns by hand fails here: a ``default=`` field's
column is NOT NULL without a database default, as after ``makemigrations``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection, models

from agents_registry.models import Participant
from core import prepared
from marketplace import services
from marketplace.exceptions import InvalidInput
from marketplace.models import Bid, Delivery, Notification, Task, TaskEvent
from tests.workers.conftest import hosted_agent, post_task
from workers import services as worker_services
from workers.models import Execution, TraceEvent

pytestmark = pytest.mark.django_db

MODELS = (Task, TaskEvent, Notification, Bid, Delivery, Execution, TraceEvent)
NAME = "probe_added"

# How the new field gets its value: a Python default (its column NOT NULL, no database
# default), a database default, or none at all (nullable).
KINDS = {
    "default": (lambda: models.IntegerField(default=7), 7),
    "db_default": (lambda: models.IntegerField(db_default=9), 9),
    "nullable": (lambda: models.IntegerField(null=True), None),
}


def _forget_schema() -> None:
    # What a restart after the migration does: every cached view of the models is rebuilt
    # (``db_returning_fields`` is a cached property that ``apps.clear_cache`` leaves).
    apps.clear_cache()
    for model in MODELS:
        vars(model._meta).pop("db_returning_fields", None)
    prepared.models_changed()


@pytest.fixture(params=sorted(KINDS))
def added_field(request: pytest.FixtureRequest) -> Iterator[object]:
    make, expected = KINDS[request.param]
    added = []
    try:
        for model in MODELS:
            field = make()
            field.contribute_to_class(model, NAME)
            added.append((model, field))
            with connection.schema_editor() as editor:
                editor.add_field(model, field)
        _forget_schema()
        yield expected
    finally:
        for model, field in added:
            # The column goes with the test's transaction; the field leaves the model here.
            model._meta.local_fields.remove(field)
            delattr(model, field.attname)
        _forget_schema()


def _values(model: type[models.Model]) -> set[object]:
    return set(model.objects.values_list(NAME, flat=True))


def test_the_transitions_write_rows_with_the_added_field(
    added_field: object, poster: Participant, bob: User, mallory: User
) -> None:
    from tests.conftest import participant_of

    worker = participant_of(mallory)
    task = post_task(poster, bounty=500, checks={})
    bid = services.bid_place(task=task, bidder=worker, price=400, eta_hours=2, plan="I can.")
    with pytest.raises(InvalidInput, match="already have an active bid"):
        services.bid_place(task=task, bidder=worker, price=300, eta_hours=2, plan="Again.")
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=worker)
    delivery = services.delivery_submit(task=task, actor=worker, text="Done.")
    services.delivery_accept(delivery=delivery, actor=poster)
    assert Task.objects.get(pk=task.pk).state == Task.State.ACCEPTED

    # A hosted agent, both ways an attempt runs.
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    for at_once in (False, True):
        hosted = post_task(poster)
        services.task_claim(task=hosted, claimant=agent.participant)
        execution = Execution.objects.get(task_ref=hosted.pk)
        outcome = worker_services.execution_run(
            execution_id=execution.pk, worker="tests", at_once=at_once
        )
        assert outcome == "succeeded"
        assert Task.objects.get(pk=hosted.pk).state == Task.State.DELIVERED

    for model in MODELS:
        assert model.objects.exists(), model
        assert _values(model) == {added_field}, model
