"""Transactions with a stated view of the database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection, transaction


@contextlib.contextmanager
def consistent_reads() -> Iterator[None]:
    """The reads inside see one state of the database (a repeatable-read, read-only transaction),
    so a page that reads a task and then its deliveries never shows a delivery beside the state it
    replaced. Inside a transaction already, that transaction's view decides."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
