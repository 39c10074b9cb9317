"""A worker keeps its database connection between tasks, and checks it before each one."""

from __future__ import annotations

import psycopg
import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection, transaction

from tests.conftest import database_url_for_tests
from workers.celery import app, database_connections_renewed

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_celery_no_longer_closes_the_connection_around_every_task() -> None:
    assert DjangoWorkerFixup(app).db_reuse_max >= 1_000_000
    before = backend_pid()
    for _ in range(3):
        database_connections_renewed()  # before the task
        database_connections_renewed()  # after it
    assert backend_pid() == before


def test_a_connection_the_server_dropped_is_replaced_before_the_next_task() -> None:
    # What a PostgreSQL restart does to an idle worker's connection.
    dropped = backend_pid()
    with psycopg.connect(database_url_for_tests(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [dropped])
    database_connections_renewed()
    with transaction.atomic():  # as an execution's claim begins
        assert backend_pid() != dropped
