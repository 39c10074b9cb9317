"""The task list and task detail of the API: JSON built by PostgreSQL from fixed statements.

These two endpoints are what agents poll. Through the ORM and DRF's ModelSerializer nearly all of
their cost was compiling querysets and building serializer fields, far more than the database work
(BENCHMARKS.md, issue 5). Here each response body is one prepared statement whose JSON PostgreSQL
writes in the shapes the serializers describe (``TaskOutput``, ``TaskDetailOutput``, still the
OpenAPI schema). Which tasks a viewer sees is ``selectors.task_visibility``, compiled by the ORM.
``tests/marketplace/test_reads.py`` checks both reads against the serializers, and what each kind
of viewer sees against ``selectors.tasks_visible``. Answers are kept in Redis between changes to
the market (``marketplace/read_cache.py``).
"""

from __future__ import annotations

from typing import Any

from agents_registry.api_fields import ParticipantOutput
from agents_registry.models import Participant
from core.prepared import (
    Placeholder,
    condition_sql,
    derived_from_models,
    prepared_cursor,
)
from marketplace.models import Bid, Task
from marketplace.read_cache import answer_kept_or_computed
from marketplace.selectors import Viewer, task_visibility


def _object(fields: list[tuple[str, str]]) -> str:
    return "json_build_object(" + ", ".join(f"'{key}', {value}" for key, value in fields) + ")"


def _participant(alias: str) -> str:
    """``ParticipantOutput``'s fields, in its order, from the participant row ``alias``."""
    columns = {field.name: field.column for field in Participant._meta.concrete_fields}
    pairs = []
    for name, field in ParticipantOutput().fields.items():
        # A bound serializer field's source is the model attribute it reads, a field's name here.
        assert isinstance(field.source, str)
        pairs.append((name, f"{alias}.{columns[field.source]}"))
    return _object(pairs)


# Whether the viewer is one of the task's parties (``selectors.is_task_party``), as SQL: the
# ``{party}`` of the fields below, filled in per kind of viewer by ``_visibility``.
_PARTY = """(
    marketplace_task.poster_id = %(own)s OR marketplace_task.assignee_id = %(own)s
    OR marketplace_task.poster_id IN
        (SELECT participant_id FROM agents_registry_agent WHERE owner_id = %(own)s)
    OR marketplace_task.assignee_id IN
        (SELECT participant_id FROM agents_registry_agent WHERE owner_id = %(own)s)
)"""

# TaskOutput's fields, in its order; api_timestamp() is in migration 0003. ``{party}`` guards
# what only the parties see.
_TASK_FIELDS = [
    ("id", "marketplace_task.id"),
    ("title", "marketplace_task.title"),
    ("description", "marketplace_task.description"),
    ("acceptance_criteria", "marketplace_task.acceptance_criteria"),
    ("checks", "marketplace_task.checks"),
    ("bounty", "marketplace_task.bounty"),
    ("price", "CASE WHEN {party} THEN marketplace_task.price END"),
    ("status", "marketplace_task.state"),
    ("visibility", "marketplace_task.visibility"),
    ("internal", "marketplace_task.internal"),
    ("deadline", "api_timestamp(marketplace_task.deadline)"),
    ("auto_award", "marketplace_task.auto_award"),
    ("bidding_closes_at", "api_timestamp(marketplace_task.bidding_closes_at)"),
    ("poster", _participant("p")),
    ("assignee", f"CASE WHEN a.id IS NOT NULL AND {{party}} THEN {_participant('a')} END"),
    ("parent_id", "marketplace_task.parent_id"),
    (
        "active_bids",
        "(SELECT count(*) FROM marketplace_bid b"
        " WHERE b.task_id = marketplace_task.id AND b.status = %(active)s)",
    ),
    ("execution_id", "CASE WHEN {party} THEN marketplace_task.execution_ref END"),
    ("created_at", "api_timestamp(marketplace_task.created_at)"),
    ("updated_at", "api_timestamp(marketplace_task.updated_at)"),
]
_DETAIL_FIELDS = [
    *_TASK_FIELDS,
    (
        "depends_on",
        "ARRAY(SELECT d.depends_on_id FROM marketplace_taskdependency d"
        " WHERE d.task_id = marketplace_task.id ORDER BY d.depends_on_id)",
    ),
    (
        "children",
        "(SELECT coalesce(json_agg(json_build_object("
        "'id', c.id, 'title', c.title, 'status', c.state, 'bounty', c.bounty) ORDER BY c.id), '[]')"
        " FROM marketplace_task c WHERE c.parent_id = marketplace_task.id)",
    ),
]
_TASK_JSON = _object(_TASK_FIELDS)
_DETAIL_JSON = _object(_DETAIL_FIELDS)
_PARTY_BY_VIEWER = {"staff": "TRUE", "anonymous": "FALSE", "participant": _PARTY}
_FROM = """
    FROM marketplace_task
    JOIN agents_registry_participant p ON p.id = marketplace_task.poster_id
    LEFT JOIN agents_registry_participant a ON a.id = marketplace_task.assignee_id
"""


@derived_from_models
def _visible_to(seen_as: str) -> tuple[str, dict[str, Any]]:
    """Which tasks a kind of viewer sees: ``selectors.task_visibility`` as the ORM compiles it,
    the viewer's ids left as the parameters ``own`` and ``family``."""
    if seen_as == "staff":
        return "TRUE", {}
    if seen_as == "anonymous":
        return condition_sql(Task, task_visibility())
    return condition_sql(
        Task, task_visibility(own=Placeholder("own"), family=Placeholder("family"))
    )


def _viewer_key(viewer: Viewer) -> str:
    """Who asks, as far as the visibility rule can tell viewers apart."""
    if viewer.is_staff:
        return "staff"
    if viewer.participant is None:
        return "anonymous"
    return f"{viewer.participant.pk}/{viewer.family_id}"


def _visibility(viewer: Viewer) -> tuple[str, str, dict[str, Any]]:
    """Which tasks the viewer sees (a condition), what it sees of them (``{party}``), and the
    parameters of both."""
    params: dict[str, Any] = {"active": Bid.Status.ACTIVE}
    if viewer.is_staff:
        seen_as = "staff"
    elif viewer.participant is None:
        seen_as = "anonymous"
    else:
        seen_as = "participant"
        params.update(own=viewer.participant.pk, family=viewer.family_id)
    visible, constants = _visible_to(seen_as)
    return visible, seen_as, {**constants, **params}


def _shaped(template: str, seen_as: str) -> str:
    return template.replace("{party}", _PARTY_BY_VIEWER[seen_as])


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
    updated_after: Any = None,
) -> tuple[int, str]:
    """How many tasks ``viewer`` may see (up to ``count_cap``) and one page of them, newest
    first, as a JSON array: one statement whatever the page size."""
    visible, seen_as, params = _visibility(viewer)
    where = [visible]
    if updated_after is not None:
        where.append("marketplace_task.updated_at > %(updated_after)s")
        params["updated_after"] = updated_after
    if state:
        # Written into the statement (one of the model's states, never input as such): each
        # state gets its own prepared statement and so a plan that knows how few tasks are open.
        # A parameter left every state one generic plan, which grew with the closed history.
        if state not in Task.State.values:
            raise ValueError(f"not a task state: {state!r}")
        where.append(f"marketplace_task.state = '{state}'")
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(
            "(marketplace_task.title ILIKE %(search)s"
            " OR marketplace_task.description ILIKE %(search)s)"
        )
        params["search"] = f"%{escaped}%"
    for column, operator, name, value in (
        ("marketplace_task.bounty", ">=", "min_bounty", min_bounty),
        ("marketplace_task.bounty", "<=", "max_bounty", max_bounty),
        ("marketplace_task.poster_id", "=", "posted_by", posted_by),
        ("marketplace_task.assignee_id", "=", "assigned_to", assigned_to),
        ("marketplace_task.parent_id", "=", "parent", parent),
    ):
        if value is not None:
            where.append(f"{column} {operator} %({name})s")
            params[name] = value
    condition = " AND ".join(where)
    params.update(limit=limit, offset=offset, cap=count_cap)

    def compute() -> str:
        with prepared_cursor() as cursor:
            cursor.execute(
                f"""SELECT
                    (SELECT count(*) FROM (SELECT FROM marketplace_task WHERE {condition}
                        LIMIT %(cap)s) capped),
                    (SELECT coalesce(json_agg(page.task ORDER BY page.created_at DESC,
                                              page.id DESC), '[]')::text
                     FROM (SELECT {_shaped(_TASK_JSON, seen_as)} AS task,
                                  marketplace_task.created_at, marketplace_task.id
                           {_FROM}
                           WHERE {condition}
                           ORDER BY marketplace_task.created_at DESC, marketplace_task.id DESC
                           LIMIT %(limit)s OFFSET %(offset)s) page)""",  # noqa: S608
                params,
            )
            total, page = cursor.fetchone()
        return f"{total} {page}"

    key = f"list {_viewer_key(viewer)} {condition} {sorted(params.items())!r}"
    answer = answer_kept_or_computed(key, compute)
    assert answer is not None  # compute always answers a page
    total, page = answer.split(" ", 1)
    return int(total), page


def task_detail(*, viewer: Viewer, task_id: int) -> str | None:
    """The task with its dependencies and children as a JSON object, or None when it does not
    exist or ``viewer`` may not see it: one statement."""
    visible, seen_as, params = _visibility(viewer)
    params["task"] = task_id
    shape = _shaped(_DETAIL_JSON, seen_as)

    def compute() -> str | None:
        with prepared_cursor() as cursor:
            cursor.execute(
                f"SELECT {shape}::text {_FROM} WHERE marketplace_task.id = %(task)s AND {visible}",
                params,
            )
            row = cursor.fetchone()
        return None if row is None else row[0]

    return answer_kept_or_computed(f"detail {_viewer_key(viewer)} {task_id}", compute)
