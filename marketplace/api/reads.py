"""The task list and task detail of the API, read with fixed SQL into plain dicts.

These two endpoints are what agents poll. Through the ORM and DRF's ModelSerializer they cost 36 and
22 ms of CPU each on the 2-core bench machine, nearly all of it compiling querysets and building
serializer fields, against 0.3 ms for the database work. Here each is one or two fixed statements
whose rows become the same dicts the serializers describe (``TaskOutput``, ``TaskDetailOutput``,
still the OpenAPI schema); ``tests/marketplace/test_reads.py`` checks both against the serializers
and the visibility rule against ``selectors.tasks_visible`` for every kind of viewer.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator
from typing import Any

import psycopg
from django.db import connection
from django.db.backends.utils import CursorWrapper

from marketplace.models import Bid, Task
from marketplace.selectors import Viewer

_TASK_COLUMNS = """
    t.id, t.title, t.description, t.acceptance_criteria, t.checks, t.bounty, t.price, t.state,
    t.visibility, t.deadline, t.auto_award, t.bidding_closes_at,
    p.id, p.kind, p.display_name, a.id, a.kind, a.display_name, t.parent_id,
    (SELECT count(*) FROM marketplace_bid b WHERE b.task_id = t.id AND b.status = %(active)s),
    t.created_at, t.updated_at
"""
_TASK_JOINS = """
    FROM marketplace_task t
    JOIN agents_registry_participant p ON p.id = t.poster_id
    LEFT JOIN agents_registry_participant a ON a.id = t.assignee_id
"""
# Who may see a task: what ``selectors.tasks_visible`` and ``can_view_task`` decide, as SQL.
# The owner lookups are uncorrelated subqueries, hashed once per statement, so the list still
# walks the (state, created_at) index.
_VISIBLE = """(
    (t.visibility = %(public)s AND t.state <> %(draft)s)
    OR t.poster_id IN (%(own)s, %(family)s)
    OR t.poster_id IN (SELECT participant_id FROM agents_registry_agent WHERE owner_id = %(family)s)
    OR t.assignee_id = %(own)s
    OR t.assignee_id IN (SELECT participant_id FROM agents_registry_agent WHERE owner_id = %(own)s)
)"""
_PUBLIC = "(t.visibility = %(public)s AND t.state <> %(draft)s)"


@contextlib.contextmanager
def _prepared_cursor() -> Iterator[CursorWrapper]:
    """A cursor binding parameters on the server, so that psycopg prepares each of these fixed
    statements on a connection after a few uses: planning them costs more than running them
    (0.7 ms against 0.25 ms for a page of 20). Django's own cursors bind on the client, which
    the ORM needs; this one is Django's wrapper still (query logging, error translation)."""
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    with contextlib.closing(raw):
        if connection.queries_logged:
            yield connection.make_debug_cursor(raw)
        else:
            yield connection.make_cursor(raw)


def _visibility(viewer: Viewer) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "public": Task.Visibility.PUBLIC,
        "draft": Task.State.DRAFT,
        "active": Bid.Status.ACTIVE,
    }
    if viewer.is_staff:
        return "TRUE", params
    if viewer.participant is None:
        return _PUBLIC, params
    params.update(own=viewer.participant.pk, family=viewer.family_id)
    return _VISIBLE, params


def _timestamp(value: datetime.datetime | None) -> str | None:
    # As DRF's DateTimeField writes it (TIME_ZONE is UTC): ISO 8601, "Z" for UTC.
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _participant(pk: int | None, kind: str, name: str) -> dict[str, Any] | None:
    return None if pk is None else {"id": pk, "kind": kind, "display_name": name}


def _task(row: tuple) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[1],
        "description": row[2],
        "acceptance_criteria": row[3],
        "checks": json.loads(row[4]),  # Django has psycopg hand JSON over undecoded
        "bounty": row[5],
        "price": row[6],
        "state": row[7],
        "visibility": row[8],
        "deadline": _timestamp(row[9]),
        "auto_award": json.loads(row[10]),
        "bidding_closes_at": _timestamp(row[11]),
        "poster": _participant(row[12], row[13], row[14]),
        "assignee": _participant(row[15], row[16], row[17]),
        "parent_id": row[18],
        "active_bids": row[19],
        "created_at": _timestamp(row[20]),
        "updated_at": _timestamp(row[21]),
    }


def task_page(
    *,
    viewer: Viewer,
    limit: int,
    offset: int,
    count_cap: int,
    state: str = Task.State.OPEN,
    search: str = "",
    min_bounty: int | None = None,
    max_bounty: int | None = None,
    posted_by: int | None = None,
    assigned_to: int | None = None,
    parent: int | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """One page of the tasks ``viewer`` may see, newest first, and their number up to
    ``count_cap``: two statements whatever the page size."""
    visible, params = _visibility(viewer)
    where = [visible]
    if state:
        where.append("t.state = %(state)s")
        params["state"] = state
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(t.title ILIKE %(search)s OR t.description ILIKE %(search)s)")
        params["search"] = f"%{escaped}%"
    for column, operator, name, value in (
        ("t.bounty", ">=", "min_bounty", min_bounty),
        ("t.bounty", "<=", "max_bounty", max_bounty),
        ("t.poster_id", "=", "posted_by", posted_by),
        ("t.assignee_id", "=", "assigned_to", assigned_to),
        ("t.parent_id", "=", "parent", parent),
    ):
        if value is not None:
            where.append(f"{column} {operator} %({name})s")
            params[name] = value
    condition = " AND ".join(where)
    params.update(limit=limit, offset=offset, cap=count_cap)
    with _prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM marketplace_task t WHERE {condition}"  # noqa: S608
            " LIMIT %(cap)s) capped",
            params,
        )
        (total,) = cursor.fetchone()
        cursor.execute(
            f"SELECT {_TASK_COLUMNS} {_TASK_JOINS} WHERE {condition}"
            " ORDER BY t.created_at DESC, t.id DESC LIMIT %(limit)s OFFSET %(offset)s",
            params,
        )
        rows = cursor.fetchall()
    return total, [_task(row) for row in rows]


def task_detail(*, viewer: Viewer, task_id: int) -> dict[str, Any] | None:
    """The task with its dependencies and children, or None when it does not exist or
    ``viewer`` may not see it: one statement."""
    visible, params = _visibility(viewer)
    params["task"] = task_id
    with _prepared_cursor() as cursor:
        cursor.execute(
            f"""SELECT {_TASK_COLUMNS},
                ARRAY(SELECT d.depends_on_id FROM marketplace_taskdependency d
                      WHERE d.task_id = t.id ORDER BY d.depends_on_id),
                (SELECT coalesce(json_agg(json_build_object(
                          'id', c.id, 'title', c.title, 'state', c.state, 'bounty', c.bounty)
                      ORDER BY c.id), '[]') FROM marketplace_task c WHERE c.parent_id = t.id)
            {_TASK_JOINS} WHERE t.id = %(task)s AND {visible}""",  # noqa: S608
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # Only jsonb comes undecoded: json_agg's json arrives as Python objects.
    return {**_task(row), "depends_on": row[22], "children": row[23]}
