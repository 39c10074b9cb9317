"""``consistent_reads``: one view of the database for every read inside, and none of its own
inside a caller's transaction."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.utils import InternalError

from core.transactions import consistent_reads


def _rename_elsewhere(pk: int, name: str) -> None:
    """Commit a change from another connection (a thread has its own)."""

    def rename() -> None:
        try:
            User.objects.filter(pk=pk).update(username=name)
        finally:
            connection.close()

    thread = threading.Thread(target=rename)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_reads_inside_see_the_state_at_the_first_read() -> None:
    user = User.objects.create(username="before")
    with consistent_reads():
        assert User.objects.get(pk=user.pk).username == "before"
        _rename_elsewhere(user.pk, "after")
        assert User.objects.get(pk=user.pk).username == "before"
    assert User.objects.get(pk=user.pk).username == "after"


@pytest.mark.django_db(transaction=True)
def test_nothing_is_written_inside() -> None:
    with pytest.raises(InternalError, match="read-only transaction"), consistent_reads():
        User.objects.create(username="refused")
    assert not User.objects.filter(username="refused").exists()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_callers_view_decides() -> None:
    with transaction.atomic():
        user = User.objects.create(username="written")
        with consistent_reads():
            assert User.objects.get(pk=user.pk).username == "written"
        user.save()
