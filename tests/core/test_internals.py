"""The few Django and redis-py internals that ``core`` leans on (each module's docstring lists
them), each exercised for the behaviour relied on: an upgrade that changes one fails here, by
name, rather than somewhere in a transition."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Q
from django.db.models.expressions import DatabaseDefault
from django.db.models.functions import Lower
from django.test.utils import CaptureQueriesContext

from core.prepared import (
    Joined,
    Placeholder,
    condition_sql,
    fetch_joined,
    fetch_row,
    insert_rows,
    insert_statement,
    violated_constraint,
)
from core.redis_calls import redis_command
from ledger.models import FailedOperation

pytestmark = pytest.mark.django_db


def test_prepared_statements_are_logged_as_written() -> None:
    # CursorDebugWrapper.debug_sql's signature, DatabaseWrapper.queries_logged and make_cursor.
    with CaptureQueriesContext(connection) as queries:
        assert fetch_row("SELECT %s::int + 1", [41]) == (42,)
    assert [query["sql"] for query in queries] == ["SELECT %s::int + 1"]


def test_a_condition_compiles_to_the_text_after_where() -> None:
    # Query.sql_with_params: "SELECT ... FROM table WHERE condition", the values as %s.
    sql, params = condition_sql(User, Q(username="alice") & ~Q(pk=Placeholder("own")))
    assert sql == (
        '("auth_user"."username" = %(condition_0)s AND NOT ("auth_user"."id" = (%(own)s)))'
    )
    assert params == {"condition_0": "alice"}


def test_inserted_rows_are_saved_instances() -> None:
    # Model._state.adding and .db: an inserted row saves as an UPDATE of itself.
    group = Group(name="inserted")
    assert insert_rows(Group, [group])
    group.name = "changed"
    group.save()
    assert list(Group.objects.values_list("pk", "name")) == [(group.pk, "changed")]


def test_joined_rows_are_converted_as_the_orm_converts_them() -> None:
    # Field.get_db_converters, DatabaseOperations.get_db_converters and Field.get_col: the JSON
    # column comes back decoded, as the ORM's compiler gives it.
    FailedOperation.objects.create(
        idempotency_key="k", fingerprint="f", code="c", detail={"rows": [1, None], "ok": True}
    )
    part = Joined(FailedOperation, "f")
    [built] = fetch_joined(f"SELECT {part.columns} FROM {part.table}", [], [part])
    loaded = FailedOperation.objects.get()
    assert isinstance(built, FailedOperation)
    assert [getattr(built, name) for name in part.names] == [
        getattr(loaded, name) for name in part.names
    ]
    assert built.detail == {"rows": [1, None], "ok": True}


def test_a_database_default_is_left_to_the_database() -> None:
    # Field.has_db_default, and the DatabaseDefault a new instance holds for such a field.
    left = models.IntegerField(db_default=9)
    assert left.has_db_default() and isinstance(left.get_default(), DatabaseDefault)
    assert not models.IntegerField(default=7).has_db_default()
    sql, _ = insert_statement(Group, [Group(name="g")])
    assert '"name"' in sql and '"id"' not in sql.split("RETURNING")[0]


def test_a_generated_field_says_so() -> None:
    # Field.generated: a generated column is never inserted.
    generated = models.GeneratedField(
        expression=Lower("name"), output_field=models.CharField(max_length=10), db_persist=True
    )
    assert generated.generated is True
    assert models.IntegerField().generated is False


def test_an_integrity_error_names_its_constraint() -> None:
    # Django's IntegrityError carries psycopg's error as __cause__, with its diagnostics.
    Group.objects.create(name="taken")
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        Group.objects.create(name="taken")
    assert violated_constraint(refused.value) == "auth_group_name_key"


def test_a_forked_child_gets_redis_connections_of_its_own() -> None:
    # redis-py's pool notices a fork (by the pid) and makes new connections in the child, so a
    # forked worker never talks on its parent's socket.
    parent = redis_command("CLIENT", "ID")
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: answer through the pipe and leave without pytest's teardown
        try:
            os.write(writing, str(redis_command("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as answer:
        in_child = answer.read()
    os.waitpid(child, 0)
    assert in_child and int(in_child) != parent
    assert redis_command("PING") is True
